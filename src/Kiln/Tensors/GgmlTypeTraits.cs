namespace Kiln.Tensors;

/// <summary>
/// Block geometry of every ggml type: a row of n elements occupies (n / BlockSize) * BlockBytes bytes.
/// Known for all types so that files holding types Kiln cannot compute with can still be
/// validated, listed and skipped; <see cref="IsSupportedForCompute"/> says which ones the kernels handle.
/// </summary>
public static class GgmlTypeTraits
{
    private const int QK_K = 256;

    /// <summary>True when <paramref name="id"/> is a type id ggml defines today.</summary>
    public static bool IsKnown(uint id) => id switch
    {
        <= 3 => true,
        >= 6 and <= 30 => true,
        34 or 35 => true,
        _ => false,
    };

    /// <summary>Elements per block.</summary>
    public static int BlockSize(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.F64
            or GgmlType.I8 or GgmlType.I16 or GgmlType.I32 or GgmlType.I64 => 1,
        GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
            or GgmlType.Q8_0 or GgmlType.Q8_1 or GgmlType.IQ4_NL => 32,
        _ when IsKnown((uint)type) => QK_K,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type"),
    };

    /// <summary>Bytes per block (ggml's type_size).</summary>
    public static int BlockBytes(GgmlType type) => type switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 => 2,
        GgmlType.BF16 => 2,
        GgmlType.F64 => 8,
        GgmlType.I8 => 1,
        GgmlType.I16 => 2,
        GgmlType.I32 => 4,
        GgmlType.I64 => 8,
        GgmlType.Q4_0 => 2 + 16,
        GgmlType.Q4_1 => 2 + 2 + 16,
        GgmlType.Q5_0 => 2 + 4 + 16,
        GgmlType.Q5_1 => 2 + 2 + 4 + 16,
        GgmlType.Q8_0 => 2 + 32,
        GgmlType.Q8_1 => 2 + 2 + 32,
        GgmlType.IQ4_NL => 2 + 16,
        GgmlType.Q2_K => QK_K / 16 + QK_K / 4 + 2 + 2,             // 84
        GgmlType.Q3_K => QK_K / 8 + QK_K / 4 + 12 + 2,             // 110
        GgmlType.Q4_K => 2 + 2 + 12 + QK_K / 2,                    // 144
        GgmlType.Q5_K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,         // 176
        GgmlType.Q6_K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,      // 210
        GgmlType.Q8_K => 4 + QK_K + QK_K / 16 * 2,                 // 292
        GgmlType.IQ2_XXS => 2 + QK_K / 8 * 2,                      // 66
        GgmlType.IQ2_XS => 2 + QK_K / 8 * 2 + QK_K / 32,           // 74
        GgmlType.IQ3_XXS => 2 + 3 * QK_K / 8,                      // 98
        GgmlType.IQ1_S => 2 + QK_K / 8 + QK_K / 16,                // 50
        GgmlType.IQ3_S => 2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + QK_K / 64, // 110
        GgmlType.IQ2_S => 2 + QK_K / 4 + QK_K / 32 + QK_K / 32,    // 82
        GgmlType.IQ4_XS => 2 + 2 + QK_K / 64 + QK_K / 2,           // 136
        GgmlType.IQ1_M => QK_K / 8 + QK_K / 16 + QK_K / 32,        // 56
        GgmlType.TQ1_0 => (QK_K - 4 * QK_K / 64) / 5 + QK_K / 64 + 2, // 54
        GgmlType.TQ2_0 => QK_K / 4 + 2,                            // 66
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type"),
    };

    /// <summary>Bytes of one row of <paramref name="n"/> elements; n must be a multiple of the block size.</summary>
    public static long RowBytes(GgmlType type, long n)
    {
        int bs = BlockSize(type);
        if (n % bs != 0)
            throw new ArgumentException($"row length {n} is not a multiple of the {type} block size {bs}", nameof(n));
        return n / bs * BlockBytes(type);
    }

    /// <summary>Types the inference kernels can compute with.</summary>
    public static bool IsSupportedForCompute(GgmlType type) =>
        type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0
            or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
            or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>Lower-case name as llama.cpp prints it (q4_0, f16 …).</summary>
    public static string Name(GgmlType type) => type.ToString().ToLowerInvariant();
}
