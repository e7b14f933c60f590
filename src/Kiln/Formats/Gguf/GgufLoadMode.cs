namespace Kiln.Formats.Gguf;

/// <summary>How <see cref="GgufFile.Open(string, GgufLoadMode)"/> makes a file's bytes addressable.</summary>
public enum GgufLoadMode
{
    /// <summary>
    /// Copy when that is likely to pay and is safe: on Linux, for files of at least
    /// <see cref="GgufFile.AutoCopyMinBytes"/> that fit in the available memory with a margin; map otherwise.
    /// </summary>
    Auto,

    /// <summary>Memory-map the file read-only (no copy; pages come from the page cache on first touch).</summary>
    Map,

    /// <summary>
    /// Read the whole file into anonymous memory aligned to 2 MiB, advised for transparent huge pages on Linux, so
    /// that decode's weight streams cross far fewer TLB entries (llama.cpp's --no-mmap).
    /// </summary>
    Copy,
}
