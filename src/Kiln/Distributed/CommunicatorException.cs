namespace Kiln.Distributed;

/// <summary>A failed exchange between ranks: an MPI error (with MPI's own message) or a rank that died.</summary>
public sealed class CommunicatorException : Exception
{
    public CommunicatorException(string message) : base(message) { }

    public CommunicatorException(string message, Exception inner) : base(message, inner) { }

    /// <summary>The rank that failed, when known.</summary>
    public int? FailedRank { get; init; }
}
