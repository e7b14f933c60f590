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
    /// <summary>
    /// 8 × 48: 24 zmm accumulators + 3 B vectors + a broadcast of the 32 registers, 11 loads per 24 FMAs. The
    /// training shapes (256 tokens; widths 384, 768, 1536, 2304, 3072) are whole tiles, so no tile is partial.
    /// </summary>
    public const int Avx512Rows = 8;
    public const int Avx512Columns = 48;

    /// <summary>6 × 16: 12 ymm accumulators + 2 B vectors + a broadcast of the 16 registers.</summary>
    public const int Avx2Rows = 6;
    public const int Avx2Columns = 16;

    /// <summary>An 8 × 48 tile of C; <paramref name="c"/> rows are <paramref name="ldc"/> floats apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx512(float* a, float* b, float* c, nint ldc, int kc, bool loadC)
    {
        Vector512<float> c0a = default, c0b = default, c0c = default;
        Vector512<float> c1a = default, c1b = default, c1c = default;
        Vector512<float> c2a = default, c2b = default, c2c = default;
        Vector512<float> c3a = default, c3b = default, c3c = default;
        Vector512<float> c4a = default, c4b = default, c4c = default;
        Vector512<float> c5a = default, c5b = default, c5c = default;
        Vector512<float> c6a = default, c6b = default, c6c = default;
        Vector512<float> c7a = default, c7b = default, c7c = default;
        if (loadC)
        {
            c0a = Vector512.Load(c); c0b = Vector512.Load(c + 16); c0c = Vector512.Load(c + 32);
            c1a = Vector512.Load(c + ldc); c1b = Vector512.Load(c + ldc + 16); c1c = Vector512.Load(c + ldc + 32);
            c2a = Vector512.Load(c + 2 * ldc); c2b = Vector512.Load(c + 2 * ldc + 16); c2c = Vector512.Load(c + 2 * ldc + 32);
            c3a = Vector512.Load(c + 3 * ldc); c3b = Vector512.Load(c + 3 * ldc + 16); c3c = Vector512.Load(c + 3 * ldc + 32);
            c4a = Vector512.Load(c + 4 * ldc); c4b = Vector512.Load(c + 4 * ldc + 16); c4c = Vector512.Load(c + 4 * ldc + 32);
            c5a = Vector512.Load(c + 5 * ldc); c5b = Vector512.Load(c + 5 * ldc + 16); c5c = Vector512.Load(c + 5 * ldc + 32);
            c6a = Vector512.Load(c + 6 * ldc); c6b = Vector512.Load(c + 6 * ldc + 16); c6c = Vector512.Load(c + 6 * ldc + 32);
            c7a = Vector512.Load(c + 7 * ldc); c7b = Vector512.Load(c + 7 * ldc + 16); c7c = Vector512.Load(c + 7 * ldc + 32);
        }
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var b2 = Vector512.Load(b + 32);
            var a0 = Vector512.Create(a[0]);
            c0a = Avx512F.FusedMultiplyAdd(a0, b0, c0a); c0b = Avx512F.FusedMultiplyAdd(a0, b1, c0b); c0c = Avx512F.FusedMultiplyAdd(a0, b2, c0c);
            var a1 = Vector512.Create(a[1]);
            c1a = Avx512F.FusedMultiplyAdd(a1, b0, c1a); c1b = Avx512F.FusedMultiplyAdd(a1, b1, c1b); c1c = Avx512F.FusedMultiplyAdd(a1, b2, c1c);
            var a2 = Vector512.Create(a[2]);
            c2a = Avx512F.FusedMultiplyAdd(a2, b0, c2a); c2b = Avx512F.FusedMultiplyAdd(a2, b1, c2b); c2c = Avx512F.FusedMultiplyAdd(a2, b2, c2c);
            var a3 = Vector512.Create(a[3]);
            c3a = Avx512F.FusedMultiplyAdd(a3, b0, c3a); c3b = Avx512F.FusedMultiplyAdd(a3, b1, c3b); c3c = Avx512F.FusedMultiplyAdd(a3, b2, c3c);
            var a4 = Vector512.Create(a[4]);
            c4a = Avx512F.FusedMultiplyAdd(a4, b0, c4a); c4b = Avx512F.FusedMultiplyAdd(a4, b1, c4b); c4c = Avx512F.FusedMultiplyAdd(a4, b2, c4c);
            var a5 = Vector512.Create(a[5]);
            c5a = Avx512F.FusedMultiplyAdd(a5, b0, c5a); c5b = Avx512F.FusedMultiplyAdd(a5, b1, c5b); c5c = Avx512F.FusedMultiplyAdd(a5, b2, c5c);
            var a6 = Vector512.Create(a[6]);
            c6a = Avx512F.FusedMultiplyAdd(a6, b0, c6a); c6b = Avx512F.FusedMultiplyAdd(a6, b1, c6b); c6c = Avx512F.FusedMultiplyAdd(a6, b2, c6c);
            var a7 = Vector512.Create(a[7]);
            c7a = Avx512F.FusedMultiplyAdd(a7, b0, c7a); c7b = Avx512F.FusedMultiplyAdd(a7, b1, c7b); c7c = Avx512F.FusedMultiplyAdd(a7, b2, c7c);
            a += 8;
            b += 48;
        }
        c0a.Store(c); c0b.Store(c + 16); c0c.Store(c + 32);
        c1a.Store(c + ldc); c1b.Store(c + ldc + 16); c1c.Store(c + ldc + 32);
        c2a.Store(c + 2 * ldc); c2b.Store(c + 2 * ldc + 16); c2c.Store(c + 2 * ldc + 32);
        c3a.Store(c + 3 * ldc); c3b.Store(c + 3 * ldc + 16); c3c.Store(c + 3 * ldc + 32);
        c4a.Store(c + 4 * ldc); c4b.Store(c + 4 * ldc + 16); c4c.Store(c + 4 * ldc + 32);
        c5a.Store(c + 5 * ldc); c5b.Store(c + 5 * ldc + 16); c5c.Store(c + 5 * ldc + 32);
        c6a.Store(c + 6 * ldc); c6b.Store(c + 6 * ldc + 16); c6c.Store(c + 6 * ldc + 32);
        c7a.Store(c + 7 * ldc); c7b.Store(c + 7 * ldc + 16); c7c.Store(c + 7 * ldc + 32);
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
