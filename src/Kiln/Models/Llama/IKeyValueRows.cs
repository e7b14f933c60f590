using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kiln.Models.Llama;

/// <summary>Positions [first, first + count) of one KV head's keys or values, as floats, count × headDim.</summary>
internal interface IKeyValueRows
{
    void ReadKeys(int first, int count, Span<float> destination);

    void ReadValues(int first, int count, Span<float> destination);

    /// <summary>A hint that keys (or values) [first, first + count) will be read soon; it may do nothing.</summary>
    void Prefetch(bool values, int first, int count);

    /// <summary>
    /// Puts a row read with <paramref name="row"/> as scratch into <paramref name="row"/>: converted types already
    /// wrote it there, an F32 cache hands back its own memory, which is copied.
    /// </summary>
    internal static void Place(ReadOnlySpan<float> read, Span<float> row)
    {
        if (!Unsafe.AreSame(ref MemoryMarshal.GetReference(read), ref MemoryMarshal.GetReference(row)))
            read.CopyTo(row);
    }
}
