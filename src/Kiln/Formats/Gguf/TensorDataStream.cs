namespace Kiln.Formats.Gguf;

/// <summary>
/// The write-only stream handed to a streaming tensor callback: forwards to the output, refuses to go
/// past the tensor's byte size (so a faulty callback cannot corrupt the next tensor's placement), and
/// lets the writer check afterwards that exactly that many bytes arrived. Disposing it leaves the output open.
/// </summary>
internal sealed class TensorDataStream : Stream
{
    private readonly Stream _output;
    private readonly string _tensorName;

    public TensorDataStream(Stream output, string tensorName, long expectedBytes)
    {
        _output = output;
        _tensorName = tensorName;
        ExpectedBytes = expectedBytes;
    }

    public long ExpectedBytes { get; }

    public long BytesWritten { get; private set; }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => BytesWritten;

    public override long Position
    {
        get => BytesWritten;
        set => throw new NotSupportedException("tensor data streams cannot seek");
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        if (buffer.Length > ExpectedBytes - BytesWritten)
            throw new InvalidOperationException(
                $"tensor '{_tensorName}': the data callback wrote more than the tensor's {ExpectedBytes} bytes");
        _output.Write(buffer);
        BytesWritten += buffer.Length;
    }

    public override void WriteByte(byte value) => Write([value]);

    /// <summary>Throws unless the callback wrote exactly the tensor's byte size.</summary>
    public void VerifyComplete()
    {
        if (BytesWritten != ExpectedBytes)
            throw new InvalidOperationException(
                $"tensor '{_tensorName}': the data callback wrote {BytesWritten} bytes, expected {ExpectedBytes}");
    }

    public override void Flush() { }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
