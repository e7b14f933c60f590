using Microsoft.Win32.SafeHandles;

namespace Kiln.Formats.Llama2c;

/// <summary>
/// An open llama2.c checkpoint (.bin as written by Karpathy's export.py "legacy" version 0 / run.c):
/// a validated header and the location of every weight array. Weights are read on demand, one array at a time,
/// so a multi-gigabyte checkpoint never has to sit in one managed buffer.
/// </summary>
public sealed class Llama2cCheckpoint : IDisposable
{
    private readonly SafeFileHandle _handle;
    private readonly Dictionary<(Llama2cWeight, int), Llama2cTensor> _byWeight;

    public string Path { get; }

    public Llama2cConfig Config { get; }

    /// <summary>Weight arrays in file order (per-layer weights split by layer; classifier only when unshared).</summary>
    public IReadOnlyList<Llama2cTensor> Tensors { get; }

    public long FileSize { get; }

    private Llama2cCheckpoint(string path, SafeFileHandle handle, Llama2cConfig config, long fileSize)
    {
        Path = path;
        _handle = handle;
        Config = config;
        FileSize = fileSize;
        Tensors = config.Layout();
        _byWeight = Tensors.ToDictionary(t => (t.Weight, t.Layer));
    }

    /// <summary>Opens and validates a checkpoint: header sanity and an exact file-size match.</summary>
    public static Llama2cCheckpoint Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            long length = RandomAccess.GetLength(handle);
            Span<byte> header = stackalloc byte[Llama2cConfig.HeaderBytes];
            int got = ReadFully(handle, header, 0);
            Llama2cConfig config;
            try
            {
                config = Llama2cConfig.Parse(header[..got]);
            }
            catch (Llama2cFormatException e)
            {
                throw new Llama2cFormatException($"{path}: {e.Message}", e);
            }
            if (length != config.ExpectedFileSize)
            {
                throw new Llama2cFormatException(
                    $"{path}: llama2.c checkpoint is {length} bytes but its header ({config}) implies exactly {config.ExpectedFileSize} bytes" +
                    (length < config.ExpectedFileSize ? " (truncated?)." : $" ({length - config.ExpectedFileSize} unexpected trailing bytes)."));
            }
            return new Llama2cCheckpoint(path, handle, config, length);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>The array for <paramref name="weight"/> (<paramref name="layer"/> for per-layer weights, -1 otherwise).</summary>
    public Llama2cTensor GetTensor(Llama2cWeight weight, int layer = -1) =>
        _byWeight.TryGetValue((weight, layer), out var tensor)
            ? tensor
            : throw new KeyNotFoundException(weight == Llama2cWeight.Classifier && Config.SharedClassifier
                ? "this checkpoint shares its classifier with the token embedding; it has no separate classifier weights"
                : $"no {weight} weights for layer {layer}");

    /// <summary>Copies the raw little-endian float32 bytes of <paramref name="tensor"/> into <paramref name="destination"/>.</summary>
    public void ReadBytes(Llama2cTensor tensor, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (destination.Length != tensor.ByteLength)
            throw new ArgumentException($"destination holds {destination.Length} bytes; {tensor.Weight} needs {tensor.ByteLength}", nameof(destination));
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        int got = ReadFully(_handle, destination, tensor.Offset);
        if (got != destination.Length)
            throw new Llama2cFormatException($"{Path}: file ended while reading {tensor.Weight} (it shrank after it was opened?).");
    }

    /// <summary>
    /// Streams the raw bytes of <paramref name="tensor"/> to <paramref name="destination"/> through <paramref name="buffer"/>,
    /// so arrays of any size are copied without a buffer of their size.
    /// </summary>
    public void CopyTo(Llama2cTensor tensor, Stream destination, Span<byte> buffer)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ArgumentNullException.ThrowIfNull(destination);
        if (buffer.IsEmpty)
            throw new ArgumentException("the copy buffer is empty", nameof(buffer));
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        long offset = tensor.Offset;
        long remaining = tensor.ByteLength;
        while (remaining > 0)
        {
            Span<byte> chunk = buffer[..(int)Math.Min(buffer.Length, remaining)];
            if (ReadFully(_handle, chunk, offset) != chunk.Length)
                throw new Llama2cFormatException($"{Path}: file ended while reading {tensor.Weight} (it shrank after it was opened?).");
            destination.Write(chunk);
            offset += chunk.Length;
            remaining -= chunk.Length;
        }
    }

    /// <summary>The raw bytes of one array in a new buffer (one array, never the whole file).</summary>
    public byte[] ReadBytes(Llama2cTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.ByteLength > Array.MaxLength)
            throw new Llama2cFormatException($"{Path}: {tensor.Weight} is {tensor.ByteLength} bytes, more than one buffer can hold.");
        var buffer = GC.AllocateUninitializedArray<byte>((int)tensor.ByteLength);
        ReadBytes(tensor, buffer);
        return buffer;
    }

    /// <summary>One array as floats, row-major.</summary>
    public float[] ReadFloats(Llama2cTensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.ByteLength > Array.MaxLength)
            throw new Llama2cFormatException($"{Path}: {tensor.Weight} is {tensor.ByteLength} bytes, more than one buffer can hold.");
        var floats = new float[tensor.ElementCount];
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(floats.AsSpan());
        ReadBytes(tensor, bytes);
        if (!BitConverter.IsLittleEndian)
        {
            var ints = System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(floats.AsSpan());
            System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(ints, ints);
        }
        return floats;
    }

    private static int ReadFully(SafeFileHandle handle, Span<byte> destination, long offset)
    {
        int total = 0;
        while (total < destination.Length)
        {
            int n = RandomAccess.Read(handle, destination[total..], offset + total);
            if (n == 0)
                break;
            total += n;
        }
        return total;
    }

    public void Dispose() => _handle.Dispose();
}
