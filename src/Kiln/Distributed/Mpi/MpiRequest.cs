using System.Buffers;

namespace Kiln.Distributed.Mpi;

/// <summary>
/// An MPI_Request with the pin that keeps its managed buffer in place until MPI is done with it. A receive also checks
/// that the message filled the buffer exactly, as the blocking receive does.
/// </summary>
internal sealed unsafe class MpiRequest : CommRequest
{
    private readonly MpiCommunicator _owner;
    private readonly string _operation;
    private readonly nint _datatype;
    private readonly int _expectedCount;
    private MemoryHandle _pin;
    private nint _request;
    private bool _done;

    /// <param name="expectedCount">Elements a receive must get; -1 for sends and collectives.</param>
    public MpiRequest(MpiCommunicator owner, string operation, nint request, MemoryHandle pin, nint datatype, int expectedCount)
    {
        _owner = owner;
        _operation = operation;
        _request = request;
        _pin = pin;
        _datatype = datatype;
        _expectedCount = expectedCount;
    }

    public override void Wait()
    {
        if (_done)
            return;
        MpiStatus status = default;
        nint request = _request;
        int code = _owner.Library.Wait(&request, &status);
        _request = request;
        Complete(code, &status);
    }

    public override bool Test()
    {
        if (_done)
            return true;
        MpiStatus status = default;
        nint request = _request;
        int flag = 0;
        int code = _owner.Library.Test(&request, &flag, &status);
        _request = request;
        if (code == 0 && flag == 0)
            return false;
        Complete(code, &status);
        return true;
    }

    private void Complete(int code, MpiStatus* status)
    {
        _done = true;
        _pin.Dispose();
        _owner.Check(code, _operation);
        if (_expectedCount >= 0)
            _owner.CheckReceived(status, _datatype, _expectedCount);
    }
}
