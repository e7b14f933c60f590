using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Kiln.Serving;

namespace Kiln.Server;

/// <summary>Runs several completions (n choices, several prompts) at once and merges their chunks in arrival order.</summary>
internal static class ChoiceStreams
{
    /// <summary>
    /// Chunks tagged with their choice index. An engine refusal of any choice is thrown from the enumeration;
    /// leaving the enumeration cancels every choice still running.
    /// </summary>
    public static async IAsyncEnumerable<(int Index, TextCompletionChunk Chunk)> MergeAsync(
        IInferenceEngine engine, IReadOnlyList<TextCompletionRequest> requests, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (requests.Count == 1)
        {
            await foreach (TextCompletionChunk chunk in TextCompletion.StreamAsync(engine, requests[0], cancellationToken).ConfigureAwait(false))
                yield return (0, chunk);
            yield break;
        }

        using var running = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var channel = Channel.CreateUnbounded<(int, TextCompletionChunk)>(new UnboundedChannelOptions { SingleReader = true });
        Task[] producers = requests.Select((request, index) => Task.Run(async () =>
        {
            await foreach (TextCompletionChunk chunk in TextCompletion.StreamAsync(engine, request, running.Token).ConfigureAwait(false))
                await channel.Writer.WriteAsync((index, chunk), running.Token).ConfigureAwait(false);
        })).ToArray();
        _ = Task.WhenAll(producers).ContinueWith(
            t => channel.Writer.TryComplete(t.Exception?.InnerExceptions.FirstOrDefault(e => e is not OperationCanceledException) ?? t.Exception?.InnerException),
            TaskScheduler.Default);
        try
        {
            await foreach (var item in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return item;
        }
        finally
        {
            running.Cancel();
            try
            {
                await Task.WhenAll(producers).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Already reported through the channel, or a consequence of cancelling the rest.
            }
        }
    }
}
