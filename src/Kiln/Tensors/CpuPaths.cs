using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// Which SIMD kernel families this process may run. The properties fold to JIT-time constants, so the
/// dispatch in each kernel costs nothing at run time. "Can" means the instructions exist (tests use that to
/// exercise every path the CPU has); "Prefer" means the dispatcher should pick the path by default.
/// </summary>
internal static class CpuPaths
{
    /// <summary>256-bit integer and float kernels: AVX2 with FMA.</summary>
    public static bool CanAvx2 => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>512-bit kernels need F (float, dword ops) and BW (byte/word ops).</summary>
    public static bool CanAvx512 => Avx512F.IsSupported && Avx512BW.IsSupported && CanAvx2;

    /// <summary>
    /// The runtime reports Vector512 as not accelerated on CPUs where 512-bit code downclocks; respect that.
    /// </summary>
    public static bool PreferAvx512 => CanAvx512 && Vector512.IsHardwareAccelerated;
}
