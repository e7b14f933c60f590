using System.Runtime.InteropServices;
using Kiln.Distributed;

namespace Kiln.Tests.TestSupport;

/// <summary>
/// MPI's strictest point-to-point rules over another communicator, for code that must run unchanged over MPI: a send
/// completes only once the matching receive has been posted (synchronous mode, as large messages behave under
/// rendezvous protocols, where <see cref="LocalCommunicator"/> buffers every send), and a non-blocking send whose buffer
/// has changed by the time it completes is an error (MPI may read the buffer until then). Collectives pass through.
/// </summary>
public sealed class SynchronousSendCommunicator(Communicator inner) : Communicator
{
    // acknowledgements travel back under the message's tag with this bit set
    private const int AckBit = 1 << 30;

    public override int Rank => inner.Rank;
    public override int Size => inner.Size;

    public override Communicator Split(int color, int key) => new SynchronousSendCommunicator(inner.Split(color, key));
    public override void Barrier() => inner.Barrier();
    public override void AllReduce<T>(Span<T> data) => inner.AllReduce(data);
    public override void ReduceScatter<T>(ReadOnlySpan<T> send, Span<T> receive) => inner.ReduceScatter(send, receive);
    public override void AllGather<T>(ReadOnlySpan<T> send, Span<T> receive) => inner.AllGather(send, receive);
    public override void Broadcast<T>(Span<T> data, int root) => inner.Broadcast(data, root);
    public override CommRequest AllReduceAsync<T>(Memory<T> data) => inner.AllReduceAsync(data);

    public override void Send<T>(ReadOnlySpan<T> data, int destination, int tag)
    {
        inner.Send(data, destination, tag);
        Span<int> ack = [0];
        inner.Receive(ack, destination, tag | AckBit);
    }

    public override void Receive<T>(Span<T> data, int source, int tag)
    {
        inner.Send<int>([1], source, tag | AckBit);
        inner.Receive(data, source, tag);
    }

    public override CommRequest SendAsync<T>(ReadOnlyMemory<T> data, int destination, int tag)
    {
        inner.Send(data.Span, destination, tag);
        var ack = new int[1];
        return new SendRequest<T>(data, data.ToArray(), inner.ReceiveAsync<int>(ack, destination, tag | AckBit), destination, tag);
    }

    public override CommRequest ReceiveAsync<T>(Memory<T> data, int source, int tag)
    {
        // posted means matched: the sender may complete from now on
        inner.Send<int>([1], source, tag | AckBit);
        return inner.ReceiveAsync(data, source, tag);
    }

    public override void Dispose() => inner.Dispose();

    private sealed class SendRequest<T>(ReadOnlyMemory<T> buffer, T[] sent, CommRequest ack, int destination, int tag) : CommRequest where T : unmanaged
    {
        public override void Wait()
        {
            ack.Wait();
            Check();
        }

        public override bool Test()
        {
            if (!ack.Test())
                return false;
            Check();
            return true;
        }

        private void Check()
        {
            if (!MemoryMarshal.AsBytes(buffer.Span).SequenceEqual(MemoryMarshal.AsBytes(sent.AsSpan())))
                throw new InvalidOperationException($"the buffer of a send to rank {destination} (tag {tag}) changed before the send completed");
        }
    }
}
