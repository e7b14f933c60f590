namespace Kiln.Tensors;

/// <summary>
/// Length checks shared by the kernels, so that a wrong row size fails with one clear message before any
/// pointer arithmetic runs (the SIMD loops themselves trust their lengths).
/// </summary>
internal static class RowArguments
{
    /// <summary>A row of <paramref name="elements"/> values stored in blocks must occupy exactly the right bytes.</summary>
    public static void CheckBlocks(string type, int blockSize, int blockBytes, int byteLength, int elements, string bytesName)
    {
        if (elements % blockSize != 0)
            throw new ArgumentException(
                $"{type} rows hold a whole number of {blockSize}-element blocks; {elements} elements is not one", bytesName);
        long expected = (long)(elements / blockSize) * blockBytes;
        if (byteLength != expected)
            throw new ArgumentException(
                $"a {type} row of {elements} elements is {expected} bytes, got {byteLength}", bytesName);
    }

    /// <summary>Two block rows that are dotted together must cover the same number of blocks.</summary>
    public static int CheckBlockPair(string type, int blockBytes, int length, string otherType, int otherBlockBytes, int otherLength, string otherName)
    {
        if (length % blockBytes != 0)
            throw new ArgumentException($"a {type} row is a whole number of {blockBytes}-byte blocks; {length} bytes is not", "w");
        int blocks = length / blockBytes;
        if (otherLength != (long)blocks * otherBlockBytes)
            throw new ArgumentException(
                $"{blocks} {type} blocks need {(long)blocks * otherBlockBytes} bytes of {otherType} activations, got {otherLength}", otherName);
        return blocks;
    }

    public static void CheckSameLength(int a, int b, string bName)
    {
        if (a != b)
            throw new ArgumentException($"lengths differ: {a} and {b}", bName);
    }
}
