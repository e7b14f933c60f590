using System.Diagnostics;
using Kiln.Inference.Sampling;
using Kiln.Inference.Text;
using Kiln.Models;
using Kiln.Tokenizers;

namespace Kiln.Inference.Generation;

/// <summary>
/// The decode loop: evaluate the prompt, then sample, stream and evaluate one token at a time until
/// end of sequence, a stop string, the token limit, a full context or cancellation. Everything it
/// needs per token is allocated before the loop starts.
/// </summary>
public sealed class TextGenerator
{
    private readonly IModelContext _context;
    private readonly Tokenizer _tokenizer;
    private readonly float[] _logits;

    public TextGenerator(IModelContext context, Tokenizer tokenizer)
    {
        _context = context;
        _tokenizer = tokenizer;
        _logits = new float[context.VocabSize];
    }

    public IModelContext Context => _context;

    /// <summary>
    /// Appends <paramref name="prompt"/> to the context (which may already hold earlier turns) and
    /// generates after it. The sampler's penalty window sees the prompt, as llama.cpp's does.
    /// </summary>
    public GenerationResult Generate(ReadOnlySpan<int> prompt, GenerationOptions options, ITextSink sink, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(sink);
        options.Sampler.Validate();
        if (prompt.IsEmpty)
            throw new ArgumentException("the prompt has no tokens", nameof(prompt));

        var sampler = new Sampler(options.Sampler, _context.VocabSize);
        foreach (int t in prompt)
            sampler.Accept(t);
        var decoder = new Utf8StreamDecoder(_tokenizer);
        var stops = options.StopStrings.Count > 0 ? new StopStringMatcher(options.StopStrings) : null;
        Span<int> one = stackalloc int[1];

        var clock = Stopwatch.StartNew();
        _context.Evaluate(prompt, _logits);
        var promptTime = clock.Elapsed;
        clock.Restart();

        int generated = 0;
        StopReason reason;
        while (true)
        {
            if (cancellation.IsCancellationRequested)
            {
                reason = StopReason.Cancelled;
                break;
            }
            if (options.MaxTokens >= 0 && generated >= options.MaxTokens)
            {
                reason = StopReason.MaxTokens;
                break;
            }

            int token = sampler.Sample(_logits);
            sampler.Accept(token);
            generated++;
            if (!options.IgnoreEndOfSequence && _tokenizer.IsEndOfGeneration(token))
            {
                reason = StopReason.EndOfSequence;
                break;
            }

            var text = decoder.Append(token);
            if (stops is not null)
            {
                bool hit = stops.Append(text, out var emit);
                sink.OnToken(token, emit);
                if (hit)
                {
                    reason = StopReason.StopString;
                    stops = null;
                    break;
                }
            }
            else
            {
                sink.OnToken(token, text);
            }

            if (_context.Position >= _context.ContextLength)
            {
                reason = StopReason.ContextFull;
                break;
            }
            one[0] = token;
            _context.Evaluate(one, _logits);
        }

        if (reason != StopReason.StopString)
        {
            var rest = decoder.Flush();
            if (stops is null)
            {
                sink.OnFinalText(rest);
            }
            else
            {
                bool hit = stops.Append(rest, out var emit);
                sink.OnFinalText(emit);
                if (hit)
                    reason = StopReason.StopString;
                else
                    sink.OnFinalText(stops.Flush());
            }
        }

        return new GenerationResult(prompt.Length, generated, promptTime, clock.Elapsed, reason);
    }
}
