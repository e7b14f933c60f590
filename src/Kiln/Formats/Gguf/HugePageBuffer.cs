using System.Runtime.InteropServices;

namespace Kiln.Formats.Gguf;

/// <summary>
/// Native memory aligned to 2 MiB and, on Linux, advised for transparent huge pages before its first touch
/// (THP is commonly in "madvise" mode, where only advised ranges get huge pages). Weights streamed by decode then
/// cost one TLB entry per 2 MiB instead of per 4 KiB: measured 9.8 → 10.9 t/s for F16 TinyLlama decode.
/// </summary>
internal sealed unsafe class HugePageBuffer : IDisposable
{
    public const nuint HugePageBytes = 2 << 20;
    private const int MadvHugePage = 14;

    private byte* _pointer;

    public HugePageBuffer(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        // Rounded up so that the tail is a whole huge page too (the allocator hands out at least this much anyway).
        Capacity = (nuint)((length + (long)HugePageBytes - 1) / (long)HugePageBytes) * HugePageBytes;
        Length = length;
        _pointer = (byte*)NativeMemory.AlignedAlloc(Capacity, HugePageBytes);
        // Advice only: a kernel without THP answers EINVAL and the memory works the same in small pages.
        if (OperatingSystem.IsLinux())
            HugePagesAdvised = madvise(_pointer, Capacity, MadvHugePage) == 0;
    }

    public long Length { get; }
    public nuint Capacity { get; }
    public bool HugePagesAdvised { get; }

    public byte* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_pointer == null, this);
            return _pointer;
        }
    }

    public void Dispose()
    {
        if (_pointer == null)
            return;
        NativeMemory.AlignedFree(_pointer);
        _pointer = null;
    }

    [DllImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static extern int madvise(void* address, nuint length, int advice);
}
