using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kiln.Distributed.Mpi;

/// <summary>
/// The bfloat16 sum as an MPI user operation: MPI has no bfloat16 type, so bf16 payloads travel as 2-byte elements and
/// MPI calls this to combine two buffers. Each pairwise addition is done in float and rounded once to bfloat16, so with
/// more than two ranks the result may differ in the last bit from <see cref="LocalCommunicator"/>'s, which rounds the
/// whole sum once (NCCL's bf16 all-reduce rounds per step too).
/// </summary>
internal static unsafe class BFloat16Sum
{
    /// <summary><paramref name="inout"/>[i] = bf16(float(<paramref name="input"/>[i]) + float(<paramref name="inout"/>[i])).</summary>
    public static void Add(ReadOnlySpan<BFloat16> input, Span<BFloat16> inout)
    {
        for (int i = 0; i < inout.Length; i++)
            inout[i] = (BFloat16)((float)input[i] + (float)inout[i]);
    }

    /// <summary>The MPI_User_function: void (void* invec, void* inoutvec, int* len, MPI_Datatype* datatype).</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Combine(void* input, void* inout, int* length, nint* datatype) =>
        Add(new ReadOnlySpan<BFloat16>(input, *length), new Span<BFloat16>(inout, *length));

    public static nint FunctionPointer => (nint)(delegate* unmanaged[Cdecl]<void*, void*, int*, nint*, void>)&Combine;
}
