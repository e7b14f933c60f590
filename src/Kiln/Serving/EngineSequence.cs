using System.Threading.Channels;
using Kiln.Inference.Sampling;

namespace Kiln.Serving;

/// <summary>
/// A request inside <see cref="LlamaEngine"/>: what the caller asked for, its sampler, and where results go. Created
/// on the caller's thread; after submission only the loop thread touches it, except <see cref="Cancel"/>.
/// </summary>
internal sealed class EngineSequence
{
    private int _cancelled;

    /// <summary>A generation request.</summary>
    public EngineSequence(EngineRequest request, Sampler sampler, int capacity)
    {
        Request = request;
        Prompt = request.Prompt;
        Sampler = sampler;
        Output = Channel.CreateBounded<GeneratedToken>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    /// <summary>An embedding request.</summary>
    public EngineSequence(IReadOnlyList<int> tokens, int embeddingLength)
    {
        Prompt = tokens;
        Embedding = new TaskCompletionSource<float[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        EmbeddingSum = new double[embeddingLength];
    }

    public EngineRequest? Request { get; }
    public IReadOnlyList<int> Prompt { get; }
    public Sampler? Sampler { get; }

    /// <summary>Generated items, sized so the loop's writes never wait (one per possible token plus the end).</summary>
    public Channel<GeneratedToken>? Output { get; }

    public TaskCompletionSource<float[]>? Embedding { get; }
    public double[]? EmbeddingSum { get; }
    public int EmbeddedRows { get; set; }

    public ScheduledSequence? Scheduled { get; set; }
    public int Generated { get; set; }
    public bool Done { get; set; }

    public bool IsCancelled => Volatile.Read(ref _cancelled) != 0;

    /// <summary>Asks the loop to drop the sequence at its next step; returns false if already asked.</summary>
    public bool Cancel() => Interlocked.Exchange(ref _cancelled, 1) == 0;
}
