namespace Kiln.Tensors;

/// <summary>
/// One thread's packing buffers for <see cref="Sgemm"/>: packed A and B blocks and an edge tile. Kept per thread
/// (the pool's workers are persistent), grown on demand and then reused, so a product allocates nothing once
/// warm. Pinned, so the 64-byte-aligned pointers stay valid; the GC frees them when the thread ends.
/// </summary>
internal sealed unsafe class SgemmScratch
{
    [ThreadStatic]
    private static SgemmScratch? t_current;

    private float[] _buffer = [];
    private float* _aligned;
    private int _capacity;

    public static SgemmScratch ForCurrentThread() => t_current ??= new SgemmScratch();

    /// <summary>At least <paramref name="floats"/> floats at a 64-byte boundary; the contents are undefined.</summary>
    public float* Reserve(int floats)
    {
        if (floats > _capacity)
        {
            const int AlignFloats = 64 / sizeof(float);
            _buffer = GC.AllocateUninitializedArray<float>(floats + AlignFloats, pinned: true);
            fixed (float* p = _buffer)
                _aligned = (float*)(((nint)p + 63) & ~(nint)63);
            _capacity = floats;
        }
        return _aligned;
    }
}
