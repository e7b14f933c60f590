using System.Runtime.InteropServices;

namespace Kiln.Distributed.Mpi;

/// <summary>
/// Open MPI's C API, looked up by name in the system's libmpi. Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM
/// …) are addresses of global objects in the library, so they come from the exports too; the functions are called
/// through unmanaged function pointers, which keeps the library's location a run-time choice (KILN_MPI_LIBRARY) rather
/// than a build-time one. MPICH and its derivatives use integer handles instead: their libraries are refused by name.
/// </summary>
internal sealed unsafe class MpiLibrary
{
    /// <summary>Open MPI's MPI_THREAD_MULTIPLE (the enum SINGLE, FUNNELED, SERIALIZED, MULTIPLE).</summary>
    public const int ThreadMultiple = 3;

    /// <summary>Open MPI's MPI_IN_PLACE.</summary>
    public static readonly void* InPlace = (void*)1;

    /// <summary>Where Kiln looks when KILN_MPI_LIBRARY is not set: Open MPI 3–5's soname, then the unversioned name.</summary>
    public static readonly string[] DefaultNames = ["libmpi.so.40", "libmpi.so"];

    private MpiLibrary(nint handle, string path)
    {
        Handle = handle;
        Path = path;
        CommWorld = Export("ompi_mpi_comm_world");
        Byte = Export("ompi_mpi_byte");
        Int = Export("ompi_mpi_int");
        Int64 = Export("ompi_mpi_int64_t");
        Float = Export("ompi_mpi_float");
        Double = Export("ompi_mpi_double");
        Sum = Export("ompi_mpi_op_sum");
        ErrorsReturn = Export("ompi_mpi_errors_return");

        Initialized = (delegate* unmanaged<int*, int>)Export("MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)Export("MPI_Finalized");
        InitThread = (delegate* unmanaged<int*, byte***, int, int*, int>)Export("MPI_Init_thread");
        Finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
        Abort = (delegate* unmanaged<nint, int, int>)Export("MPI_Abort");
        ErrorString = (delegate* unmanaged<int, byte*, int*, int>)Export("MPI_Error_string");
        GetLibraryVersion = (delegate* unmanaged<byte*, int*, int>)Export("MPI_Get_library_version");
        CommSetErrhandler = (delegate* unmanaged<nint, nint, int>)Export("MPI_Comm_set_errhandler");
        CommRank = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_rank");
        CommSize = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_size");
        CommSplit = (delegate* unmanaged<nint, int, int, nint*, int>)Export("MPI_Comm_split");
        CommFree = (delegate* unmanaged<nint*, int>)Export("MPI_Comm_free");
        TypeContiguous = (delegate* unmanaged<int, nint, nint*, int>)Export("MPI_Type_contiguous");
        TypeCommit = (delegate* unmanaged<nint*, int>)Export("MPI_Type_commit");
        TypeFree = (delegate* unmanaged<nint*, int>)Export("MPI_Type_free");
        OpCreate = (delegate* unmanaged<nint, int, nint*, int>)Export("MPI_Op_create");
        OpFree = (delegate* unmanaged<nint*, int>)Export("MPI_Op_free");
        Barrier = (delegate* unmanaged<nint, int>)Export("MPI_Barrier");
        Allreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)Export("MPI_Allreduce");
        ReduceScatterBlock = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)Export("MPI_Reduce_scatter_block");
        Allgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)Export("MPI_Allgather");
        Bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)Export("MPI_Bcast");
        Send = (delegate* unmanaged<void*, int, nint, int, int, nint, int>)Export("MPI_Send");
        Recv = (delegate* unmanaged<void*, int, nint, int, int, nint, MpiStatus*, int>)Export("MPI_Recv");
        Isend = (delegate* unmanaged<void*, int, nint, int, int, nint, nint*, int>)Export("MPI_Isend");
        Irecv = (delegate* unmanaged<void*, int, nint, int, int, nint, nint*, int>)Export("MPI_Irecv");
        Iallreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, nint*, int>)Export("MPI_Iallreduce");
        Wait = (delegate* unmanaged<nint*, MpiStatus*, int>)Export("MPI_Wait");
        Test = (delegate* unmanaged<nint*, int*, MpiStatus*, int>)Export("MPI_Test");
        GetCount = (delegate* unmanaged<MpiStatus*, nint, int*, int>)Export("MPI_Get_count");
    }

    public nint Handle { get; }
    public string Path { get; }

    public nint CommWorld { get; }
    public nint Byte { get; }
    public nint Int { get; }
    public nint Int64 { get; }
    public nint Float { get; }
    public nint Double { get; }
    public nint Sum { get; }
    public nint ErrorsReturn { get; }

    public delegate* unmanaged<int*, int> Initialized { get; }
    public delegate* unmanaged<int*, int> Finalized { get; }
    public delegate* unmanaged<int*, byte***, int, int*, int> InitThread { get; }
    public delegate* unmanaged<int> Finalize { get; }
    public delegate* unmanaged<nint, int, int> Abort { get; }
    public delegate* unmanaged<int, byte*, int*, int> ErrorString { get; }
    public delegate* unmanaged<byte*, int*, int> GetLibraryVersion { get; }
    public delegate* unmanaged<nint, nint, int> CommSetErrhandler { get; }
    public delegate* unmanaged<nint, int*, int> CommRank { get; }
    public delegate* unmanaged<nint, int*, int> CommSize { get; }
    public delegate* unmanaged<nint, int, int, nint*, int> CommSplit { get; }
    public delegate* unmanaged<nint*, int> CommFree { get; }
    public delegate* unmanaged<int, nint, nint*, int> TypeContiguous { get; }
    public delegate* unmanaged<nint*, int> TypeCommit { get; }
    public delegate* unmanaged<nint*, int> TypeFree { get; }
    public delegate* unmanaged<nint, int, nint*, int> OpCreate { get; }
    public delegate* unmanaged<nint*, int> OpFree { get; }
    public delegate* unmanaged<nint, int> Barrier { get; }
    public delegate* unmanaged<void*, void*, int, nint, nint, nint, int> Allreduce { get; }
    public delegate* unmanaged<void*, void*, int, nint, nint, nint, int> ReduceScatterBlock { get; }
    public delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int> Allgather { get; }
    public delegate* unmanaged<void*, int, nint, int, nint, int> Bcast { get; }
    public delegate* unmanaged<void*, int, nint, int, int, nint, int> Send { get; }
    public delegate* unmanaged<void*, int, nint, int, int, nint, MpiStatus*, int> Recv { get; }
    public delegate* unmanaged<void*, int, nint, int, int, nint, nint*, int> Isend { get; }
    public delegate* unmanaged<void*, int, nint, int, int, nint, nint*, int> Irecv { get; }
    public delegate* unmanaged<void*, void*, int, nint, nint, nint, nint*, int> Iallreduce { get; }
    public delegate* unmanaged<nint*, MpiStatus*, int> Wait { get; }
    public delegate* unmanaged<nint*, int*, MpiStatus*, int> Test { get; }
    public delegate* unmanaged<MpiStatus*, nint, int*, int> GetCount { get; }

    /// <summary>
    /// Loads the library (KILN_MPI_LIBRARY, else <see cref="DefaultNames"/>). Throws <see cref="DllNotFoundException"/>
    /// naming what was tried, or <see cref="EntryPointNotFoundException"/> when the library is not Open MPI's.
    /// </summary>
    public static MpiLibrary Load(string? explicitPath)
    {
        string[] candidates = string.IsNullOrEmpty(explicitPath) ? DefaultNames : [explicitPath];
        var reasons = new List<string>();
        foreach (string name in candidates)
        {
            if (!NativeLibrary.TryLoad(name, out nint handle))
            {
                reasons.Add(name);
                continue;
            }
            if (!NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out _))
                throw new EntryPointNotFoundException(
                    $"{name} is not Open MPI's libmpi (no ompi_mpi_comm_world); Kiln's MPI binding speaks Open MPI's ABI only");
            return new MpiLibrary(handle, name);
        }
        throw new DllNotFoundException($"could not load {string.Join(" or ", reasons)}");
    }

    public string LibraryVersion()
    {
        byte* text = stackalloc byte[4096]; // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI; room to spare
        int length = 0;
        if (GetLibraryVersion(text, &length) != 0)
            return "Open MPI";
        string version = System.Text.Encoding.UTF8.GetString(text, Math.Clamp(length, 0, 4096)).TrimEnd('\0', '\n');
        int comma = version.IndexOf(',');
        return comma > 0 ? version[..comma] : version;
    }

    /// <summary>MPI's own words for an error code.</summary>
    public string Describe(int code)
    {
        byte* text = stackalloc byte[1024]; // MPI_MAX_ERROR_STRING is 256 in Open MPI; room to spare
        int length = 0;
        if (ErrorString(code, text, &length) != 0)
            return $"MPI error {code}";
        return System.Text.Encoding.UTF8.GetString(text, Math.Clamp(length, 0, 1024)).TrimEnd('\0');
    }

    private nint Export(string name) => NativeLibrary.GetExport(Handle, name);
}
