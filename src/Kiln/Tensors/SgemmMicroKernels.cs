using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// The register tiles of <see cref="Sgemm"/>: C[Rows, Columns] (+)= Apanel · Bpanel over kc steps, where the packed
/// A micro-panel holds Rows values per k step (broadcast) and the packed B micro-panel Columns values per k step
/// (vector loads). Every C element is one fused multiply-add chain in k order, started from C itself
/// (<c>loadC</c>) or from zero, so a tile gives the bits of <see cref="Sgemm.MultiplyScalar"/> whatever the blocking.
/// </summary>
internal static unsafe class SgemmMicroKernels
{
    /// <summary>12 × 32: 24 zmm accumulators + 2 B vectors + a broadcast leave the 32 registers just enough room
    /// (BLIS's Zen 4 sgemm tile, transposed to row-major).</summary>
    public const int Avx512Rows = 12;
    public const int Avx512Columns = 32;

    /// <summary>6 × 16: 12 ymm accumulators + 2 B vectors + a broadcast of the 16 registers.</summary>
    public const int Avx2Rows = 6;
    public const int Avx2Columns = 16;

    /// <summary>A 12 × 32 tile of C; <paramref name="c"/> rows are <paramref name="ldc"/> floats apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx512(float* a, float* b, float* c, nint ldc, int kc, bool loadC)
    {
        Vector512<float> c0a = default, c0b = default;
        Vector512<float> c1a = default, c1b = default;
        Vector512<float> c2a = default, c2b = default;
        Vector512<float> c3a = default, c3b = default;
        Vector512<float> c4a = default, c4b = default;
        Vector512<float> c5a = default, c5b = default;
        Vector512<float> c6a = default, c6b = default;
        Vector512<float> c7a = default, c7b = default;
        Vector512<float> c8a = default, c8b = default;
        Vector512<float> c9a = default, c9b = default;
        Vector512<float> c10a = default, c10b = default;
        Vector512<float> c11a = default, c11b = default;
        if (loadC)
        {
            c0a = Vector512.Load(c); c0b = Vector512.Load(c + 16);
            c1a = Vector512.Load(c + ldc); c1b = Vector512.Load(c + ldc + 16);
            c2a = Vector512.Load(c + 2 * ldc); c2b = Vector512.Load(c + 2 * ldc + 16);
            c3a = Vector512.Load(c + 3 * ldc); c3b = Vector512.Load(c + 3 * ldc + 16);
            c4a = Vector512.Load(c + 4 * ldc); c4b = Vector512.Load(c + 4 * ldc + 16);
            c5a = Vector512.Load(c + 5 * ldc); c5b = Vector512.Load(c + 5 * ldc + 16);
            c6a = Vector512.Load(c + 6 * ldc); c6b = Vector512.Load(c + 6 * ldc + 16);
            c7a = Vector512.Load(c + 7 * ldc); c7b = Vector512.Load(c + 7 * ldc + 16);
            c8a = Vector512.Load(c + 8 * ldc); c8b = Vector512.Load(c + 8 * ldc + 16);
            c9a = Vector512.Load(c + 9 * ldc); c9b = Vector512.Load(c + 9 * ldc + 16);
            c10a = Vector512.Load(c + 10 * ldc); c10b = Vector512.Load(c + 10 * ldc + 16);
            c11a = Vector512.Load(c + 11 * ldc); c11b = Vector512.Load(c + 11 * ldc + 16);
        }
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var a0 = Vector512.Create(a[0]);
            c0a = Avx512F.FusedMultiplyAdd(a0, b0, c0a); c0b = Avx512F.FusedMultiplyAdd(a0, b1, c0b);
            var a1 = Vector512.Create(a[1]);
            c1a = Avx512F.FusedMultiplyAdd(a1, b0, c1a); c1b = Avx512F.FusedMultiplyAdd(a1, b1, c1b);
            var a2 = Vector512.Create(a[2]);
            c2a = Avx512F.FusedMultiplyAdd(a2, b0, c2a); c2b = Avx512F.FusedMultiplyAdd(a2, b1, c2b);
            var a3 = Vector512.Create(a[3]);
            c3a = Avx512F.FusedMultiplyAdd(a3, b0, c3a); c3b = Avx512F.FusedMultiplyAdd(a3, b1, c3b);
            var a4 = Vector512.Create(a[4]);
            c4a = Avx512F.FusedMultiplyAdd(a4, b0, c4a); c4b = Avx512F.FusedMultiplyAdd(a4, b1, c4b);
            var a5 = Vector512.Create(a[5]);
            c5a = Avx512F.FusedMultiplyAdd(a5, b0, c5a); c5b = Avx512F.FusedMultiplyAdd(a5, b1, c5b);
            var a6 = Vector512.Create(a[6]);
            c6a = Avx512F.FusedMultiplyAdd(a6, b0, c6a); c6b = Avx512F.FusedMultiplyAdd(a6, b1, c6b);
            var a7 = Vector512.Create(a[7]);
            c7a = Avx512F.FusedMultiplyAdd(a7, b0, c7a); c7b = Avx512F.FusedMultiplyAdd(a7, b1, c7b);
            var a8 = Vector512.Create(a[8]);
            c8a = Avx512F.FusedMultiplyAdd(a8, b0, c8a); c8b = Avx512F.FusedMultiplyAdd(a8, b1, c8b);
            var a9 = Vector512.Create(a[9]);
            c9a = Avx512F.FusedMultiplyAdd(a9, b0, c9a); c9b = Avx512F.FusedMultiplyAdd(a9, b1, c9b);
            var a10 = Vector512.Create(a[10]);
            c10a = Avx512F.FusedMultiplyAdd(a10, b0, c10a); c10b = Avx512F.FusedMultiplyAdd(a10, b1, c10b);
            var a11 = Vector512.Create(a[11]);
            c11a = Avx512F.FusedMultiplyAdd(a11, b0, c11a); c11b = Avx512F.FusedMultiplyAdd(a11, b1, c11b);
            a += 12;
            b += 32;
        }
        c0a.Store(c); c0b.Store(c + 16);
        c1a.Store(c + ldc); c1b.Store(c + ldc + 16);
        c2a.Store(c + 2 * ldc); c2b.Store(c + 2 * ldc + 16);
        c3a.Store(c + 3 * ldc); c3b.Store(c + 3 * ldc + 16);
        c4a.Store(c + 4 * ldc); c4b.Store(c + 4 * ldc + 16);
        c5a.Store(c + 5 * ldc); c5b.Store(c + 5 * ldc + 16);
        c6a.Store(c + 6 * ldc); c6b.Store(c + 6 * ldc + 16);
        c7a.Store(c + 7 * ldc); c7b.Store(c + 7 * ldc + 16);
        c8a.Store(c + 8 * ldc); c8b.Store(c + 8 * ldc + 16);
        c9a.Store(c + 9 * ldc); c9b.Store(c + 9 * ldc + 16);
        c10a.Store(c + 10 * ldc); c10b.Store(c + 10 * ldc + 16);
        c11a.Store(c + 11 * ldc); c11b.Store(c + 11 * ldc + 16);
    }

    /// <summary>A 6 × 16 tile of C; <paramref name="c"/> rows are <paramref name="ldc"/> floats apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx2(float* a, float* b, float* c, nint ldc, int kc, bool loadC)
    {
        Vector256<float> c0a = default, c0b = default;
        Vector256<float> c1a = default, c1b = default;
        Vector256<float> c2a = default, c2b = default;
        Vector256<float> c3a = default, c3b = default;
        Vector256<float> c4a = default, c4b = default;
        Vector256<float> c5a = default, c5b = default;
        if (loadC)
        {
            c0a = Vector256.Load(c); c0b = Vector256.Load(c + 8);
            c1a = Vector256.Load(c + ldc); c1b = Vector256.Load(c + ldc + 8);
            c2a = Vector256.Load(c + 2 * ldc); c2b = Vector256.Load(c + 2 * ldc + 8);
            c3a = Vector256.Load(c + 3 * ldc); c3b = Vector256.Load(c + 3 * ldc + 8);
            c4a = Vector256.Load(c + 4 * ldc); c4b = Vector256.Load(c + 4 * ldc + 8);
            c5a = Vector256.Load(c + 5 * ldc); c5b = Vector256.Load(c + 5 * ldc + 8);
        }
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var a0 = Vector256.Create(a[0]);
            c0a = Fma.MultiplyAdd(a0, b0, c0a); c0b = Fma.MultiplyAdd(a0, b1, c0b);
            var a1 = Vector256.Create(a[1]);
            c1a = Fma.MultiplyAdd(a1, b0, c1a); c1b = Fma.MultiplyAdd(a1, b1, c1b);
            var a2 = Vector256.Create(a[2]);
            c2a = Fma.MultiplyAdd(a2, b0, c2a); c2b = Fma.MultiplyAdd(a2, b1, c2b);
            var a3 = Vector256.Create(a[3]);
            c3a = Fma.MultiplyAdd(a3, b0, c3a); c3b = Fma.MultiplyAdd(a3, b1, c3b);
            var a4 = Vector256.Create(a[4]);
            c4a = Fma.MultiplyAdd(a4, b0, c4a); c4b = Fma.MultiplyAdd(a4, b1, c4b);
            var a5 = Vector256.Create(a[5]);
            c5a = Fma.MultiplyAdd(a5, b0, c5a); c5b = Fma.MultiplyAdd(a5, b1, c5b);
            a += 6;
            b += 16;
        }
        c0a.Store(c); c0b.Store(c + 8);
        c1a.Store(c + ldc); c1b.Store(c + ldc + 8);
        c2a.Store(c + 2 * ldc); c2b.Store(c + 2 * ldc + 8);
        c3a.Store(c + 3 * ldc); c3b.Store(c + 3 * ldc + 8);
        c4a.Store(c + 4 * ldc); c4b.Store(c + 4 * ldc + 8);
        c5a.Store(c + 5 * ldc); c5b.Store(c + 5 * ldc + 8);
    }
}
