using System.Runtime.CompilerServices;
using System.Text;
using Kiln.Inference.Text;
using Kiln.Tokenizers;

namespace Kiln.Serving;

/// <summary>
/// Runs a <see cref="TextCompletionRequest"/> on an engine and turns its tokens into text: UTF-8 is reassembled
/// across tokens and stop strings are found across token boundaries, held-back text being released only once it
/// cannot start a stop string. Shared by every front end so that all of them stop and decode alike.
/// </summary>
public static class TextCompletion
{
    /// <summary>Streams the completion. Leaving the enumeration early cancels the engine's sequence.</summary>
    public static async IAsyncEnumerable<TextCompletionChunk> StreamAsync(
        IInferenceEngine engine, TextCompletionRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(request);
        Tokenizer tokenizer = engine.Tokenizer;
        var decoder = new Utf8StreamDecoder(tokenizer);
        StopStringMatcher? stops = request.StopStrings.Count > 0 ? new StopStringMatcher(request.StopStrings) : null;
        var pending = new List<GeneratedToken>();
        var text = new StringBuilder();

        await foreach (GeneratedToken item in engine.GenerateAsync(request.ToEngineRequest(tokenizer), cancellationToken).WithCancellation(cancellationToken))
        {
            ReadOnlySpan<char> piece = [];
            // An end-of-generation token is not part of the output, whether or not the engine reports it.
            if (item.Token >= 0 && !tokenizer.IsEndOfGeneration(item.Token))
            {
                pending.Add(item);
                piece = decoder.Append(item.Token);
            }
            text.Clear();
            if (item.FinishReason is { } finish)
            {
                text.Append(piece);
                text.Append(decoder.Flush());
                if (stops is not null)
                {
                    bool stopped = stops.Append(text.ToString(), out ReadOnlySpan<char> released);
                    string last = released.ToString() + (stopped ? "" : stops.Flush().ToString());
                    yield return new TextCompletionChunk(last, pending.ToArray(), stopped ? TextFinishReason.Stop : Map(finish));
                }
                else
                {
                    yield return new TextCompletionChunk(text.ToString(), pending.ToArray(), Map(finish));
                }
                yield break;
            }
            if (stops is null)
            {
                yield return new TextCompletionChunk(piece.ToString(), pending.ToArray(), null);
                pending.Clear();
                continue;
            }
            if (stops.Append(piece, out ReadOnlySpan<char> emit))
            {
                // Leaving the loop disposes the engine's enumerator, which ends the sequence at its next step.
                yield return new TextCompletionChunk(emit.ToString(), pending.ToArray(), TextFinishReason.Stop);
                yield break;
            }
            yield return new TextCompletionChunk(emit.ToString(), pending.ToArray(), null);
            pending.Clear();
        }
        // The engine ended without a finish item (it should not): report what there is.
        yield return new TextCompletionChunk(decoder.Flush().ToString() + (stops?.Flush().ToString() ?? ""), pending.ToArray(), TextFinishReason.Cancelled);
    }

    /// <summary>Runs the completion to its end and returns the whole text, every token and the finish reason.</summary>
    public static async Task<TextCompletionResult> CompleteAsync(IInferenceEngine engine, TextCompletionRequest request, CancellationToken cancellationToken = default)
    {
        var text = new StringBuilder();
        var tokens = new List<GeneratedToken>();
        TextFinishReason finish = TextFinishReason.Cancelled;
        await foreach (TextCompletionChunk chunk in StreamAsync(engine, request, cancellationToken).ConfigureAwait(false))
        {
            text.Append(chunk.Text);
            tokens.AddRange(chunk.Tokens);
            if (chunk.FinishReason is { } reason)
                finish = reason;
        }
        return new TextCompletionResult(text.ToString(), tokens, finish);
    }

    public static TextFinishReason Map(EngineFinishReason reason) => reason switch
    {
        EngineFinishReason.EndOfGeneration => TextFinishReason.Stop,
        EngineFinishReason.Length or EngineFinishReason.ContextFull => TextFinishReason.Length,
        _ => TextFinishReason.Cancelled,
    };
}

/// <summary>A whole completion: its text, its tokens (the end-of-generation token excluded) and why it ended.</summary>
public sealed record TextCompletionResult(string Text, IReadOnlyList<GeneratedToken> Tokens, TextFinishReason FinishReason)
{
    /// <summary>Tokens generated (what OpenAI's usage counts as completion tokens).</summary>
    public int TokenCount => Tokens.Count(t => t.Token >= 0);
}
