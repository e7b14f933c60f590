using System.Runtime.InteropServices;

namespace Kiln.Distributed.Mpi;

/// <summary>Open MPI's MPI_Status (ompi_status_public_t): three public ints, then two private fields it fills in.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct MpiStatus
{
    public int Source;
    public int Tag;
    public int Error;
    public int Cancelled;
    public nuint Count;
}
