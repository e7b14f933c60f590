namespace Kiln.Distributed.Mpi;

/// <summary>
/// A <see cref="Communicator"/> over the system's Open MPI (ranks are processes started by mpirun). Spans are pinned
/// and handed to MPI as they are: all-reduce works in place, nothing is copied into managed arrays. Every
/// communicator returns errors instead of aborting (MPI_ERRORS_RETURN), and each error becomes a
/// <see cref="CommunicatorException"/> carrying MPI's own text. The world communicator is made once per process
/// (<see cref="TryCreateWorld"/>); disposing it finalizes MPI. A rank that fails should call <see cref="Abort"/>
/// rather than dispose the world: MPI_Finalize waits for every rank, and the others may be waiting for this one.
/// </summary>
public sealed unsafe class MpiCommunicator : Communicator
{
    private static readonly Lock WorldLock = new();
    private static MpiCommunicator? s_world;

    private readonly bool _isWorld;
    private readonly MpiTypes _types;
    private nint _comm;

    private MpiCommunicator(MpiLibrary library, MpiTypes types, nint comm, bool isWorld)
    {
        Library = library;
        _types = types;
        _comm = comm;
        _isWorld = isWorld;
        int rank, size;
        Check(library.CommRank(comm, &rank), "Comm_rank");
        Check(library.CommSize(comm, &size), "Comm_size");
        Rank = rank;
        Size = size;
    }

    public override int Rank { get; }
    public override int Size { get; }

    /// <summary>The thread support MPI granted (0 single … 3 multiple); Kiln asks for multiple.</summary>
    public int ThreadLevel { get; private init; }

    /// <summary>The MPI library's name and version, e.g. "Open MPI v4.1.4".</summary>
    public string LibraryVersion => Library.LibraryVersion();

    internal MpiLibrary Library { get; }

    /// <summary>
    /// The world communicator when an MPI launcher started this process, null when it runs alone. Throws a
    /// <see cref="CommunicatorException"/> saying how to install MPI when launched by mpirun but libmpi cannot be
    /// loaded. KILN_MPI_LIBRARY names the library to load instead of Open MPI's default soname.
    /// </summary>
    public static MpiCommunicator? TryCreateWorld()
    {
        string? launcher = MpiLaunch.Detect();
        return launcher is null ? null : CreateWorld(launcher);
    }

    /// <summary>Initializes MPI (MPI_Init_thread, asking for MPI_THREAD_MULTIPLE) and returns the world; once per process.</summary>
    public static MpiCommunicator CreateWorld(string launcher = "")
    {
        lock (WorldLock)
        {
            if (s_world is not null)
                throw new InvalidOperationException("the MPI world communicator already exists in this process");
            MpiLibrary library;
            try
            {
                library = MpiLibrary.Load(Environment.GetEnvironmentVariable("KILN_MPI_LIBRARY"));
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
            {
                string by = launcher.Length > 0 ? $"kiln was started by an MPI launcher ({launcher}) but " : "";
                throw new CommunicatorException(
                    $"{by}Open MPI's library could not be loaded: {e.Message}. Install Open MPI with scripts/install-mpi.sh " +
                    "(Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev), or point KILN_MPI_LIBRARY at libmpi.so.40", e);
            }
            int initialized, provided;
            Check(library, library.Initialized(&initialized), "Initialized", -1);
            if (initialized != 0)
                throw new InvalidOperationException("MPI was initialized outside Kiln");
            Check(library, library.InitThread(null, null, MpiLibrary.ThreadMultiple, &provided), "Init_thread", -1);
            Check(library, library.CommSetErrhandler(library.CommWorld, library.ErrorsReturn), "Comm_set_errhandler", -1);
            var types = MpiTypes.Create(library);
            s_world = new MpiCommunicator(library, types, library.CommWorld, isWorld: true) { ThreadLevel = provided };
            return s_world;
        }
    }

    public override Communicator Split(int color, int key)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(color); // MPI reserves negative colours (MPI_UNDEFINED)
        nint created;
        Check(Library.CommSplit(_comm, color, key, &created), "Comm_split");
        Check(Library.CommSetErrhandler(created, Library.ErrorsReturn), "Comm_set_errhandler");
        return new MpiCommunicator(Library, _types, created, isWorld: false);
    }

    public override void Barrier() => Check(Library.Barrier(_comm), "Barrier");

    public override void AllReduce<T>(Span<T> data)
    {
        var (type, op) = TypeAndSum<T>();
        fixed (T* p = data)
            Check(Library.Allreduce(MpiLibrary.InPlace, p, data.Length, type, op, _comm), "Allreduce");
    }

    public override void ReduceScatter<T>(ReadOnlySpan<T> send, Span<T> receive)
    {
        var (type, op) = TypeAndSum<T>();
        CheckReduceScatter(send.Length, receive.Length);
        fixed (T* s = send)
        fixed (T* r = receive)
            Check(Library.ReduceScatterBlock(s, r, receive.Length, type, op, _comm), "Reduce_scatter_block");
    }

    public override void AllGather<T>(ReadOnlySpan<T> send, Span<T> receive)
    {
        var (type, _) = TypeAndSum<T>();
        CheckAllGather(send.Length, receive.Length);
        fixed (T* s = send)
        fixed (T* r = receive)
            Check(Library.Allgather(s, send.Length, type, r, send.Length, type, _comm), "Allgather");
    }

    public override void Broadcast<T>(Span<T> data, int root)
    {
        var (type, _) = TypeAndSum<T>();
        CheckRank(root, nameof(root));
        fixed (T* p = data)
            Check(Library.Bcast(p, data.Length, type, root, _comm), "Bcast");
    }

    public override void Send<T>(ReadOnlySpan<T> data, int destination, int tag)
    {
        var (type, _) = TypeAndSum<T>();
        CheckRank(destination, nameof(destination));
        fixed (T* p = data)
            Check(Library.Send(p, data.Length, type, destination, tag, _comm), "Send");
    }

    public override void Receive<T>(Span<T> data, int source, int tag)
    {
        var (type, _) = TypeAndSum<T>();
        CheckRank(source, nameof(source));
        MpiStatus status = default;
        fixed (T* p = data)
            Check(Library.Recv(p, data.Length, type, source, tag, _comm, &status), "Recv");
        CheckReceived(&status, type, data.Length);
    }

    public override CommRequest SendAsync<T>(ReadOnlyMemory<T> data, int destination, int tag)
    {
        var (type, _) = TypeAndSum<T>();
        CheckRank(destination, nameof(destination));
        var pin = data.Pin();
        nint request;
        int code = Library.Isend(pin.Pointer, data.Length, type, destination, tag, _comm, &request);
        return Started(code, "Isend", request, pin, type, expectedCount: -1);
    }

    public override CommRequest ReceiveAsync<T>(Memory<T> data, int source, int tag)
    {
        var (type, _) = TypeAndSum<T>();
        CheckRank(source, nameof(source));
        var pin = data.Pin();
        nint request;
        int code = Library.Irecv(pin.Pointer, data.Length, type, source, tag, _comm, &request);
        return Started(code, "Irecv", request, pin, type, expectedCount: data.Length);
    }

    public override CommRequest AllReduceAsync<T>(Memory<T> data)
    {
        var (type, op) = TypeAndSum<T>();
        var pin = data.Pin();
        nint request;
        int code = Library.Iallreduce(MpiLibrary.InPlace, pin.Pointer, data.Length, type, op, _comm, &request);
        return Started(code, "Iallreduce", request, pin, type, expectedCount: -1);
    }

    /// <summary>
    /// Ends the whole job now (MPI_Abort on the world): mpirun stops every rank. For a rank that failed while the others
    /// may be waiting for it in a collective. Does not return.
    /// </summary>
    public void Abort(int errorCode)
    {
        Library.Abort(Library.CommWorld, errorCode);
        Environment.Exit(errorCode); // MPI_Abort should not return; if it does, still never leave the others waiting on a live process
    }

    /// <summary>A split communicator is freed; the world finalizes MPI (every rank must get here).</summary>
    public override void Dispose()
    {
        if (_comm == 0)
            return;
        if (_isWorld)
        {
            _types.Free(Library);
            Check(Library.Finalize(), "Finalize");
        }
        else
        {
            nint comm = _comm;
            Check(Library.CommFree(&comm), "Comm_free");
        }
        _comm = 0;
    }

    internal void Check(int code, string operation) => Check(Library, code, operation, Rank);

    internal void CheckReceived(MpiStatus* status, nint type, int expected)
    {
        int count;
        Check(Library.GetCount(status, type, &count), "Get_count");
        if (count != expected)
            throw new CommunicatorException(
                $"message from rank {status->Source} with tag {status->Tag} holds {count} elements, not {expected}");
    }

    private static void Check(MpiLibrary library, int code, string operation, int rank)
    {
        if (code != 0)
            throw new CommunicatorException($"MPI_{operation} failed{(rank >= 0 ? $" on rank {rank}" : "")}: {library.Describe(code)}");
    }

    private MpiRequest Started(int code, string operation, nint request, System.Buffers.MemoryHandle pin, nint type, int expectedCount)
    {
        if (code != 0)
        {
            pin.Dispose();
            Check(code, operation);
        }
        return new MpiRequest(this, operation, request, pin, type, expectedCount);
    }

    private (nint Type, nint Sum) TypeAndSum<T>() where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(_comm == 0, this);
        CheckElementType<T>();
        if (typeof(T) == typeof(float)) return (Library.Float, Library.Sum);
        if (typeof(T) == typeof(double)) return (Library.Double, Library.Sum);
        if (typeof(T) == typeof(int)) return (Library.Int, Library.Sum);
        if (typeof(T) == typeof(long)) return (Library.Int64, Library.Sum);
        return (_types.BFloat16, _types.BFloat16Sum);
    }
}
