using System.Text;

namespace Kiln.Tests.Formats.Gguf;

/// <summary>
/// Assembles GGUF bytes field by field, independently of GgufWriter, so tests can build exactly the
/// (often malformed) file they need and know the byte offset of every field they break.
/// </summary>
internal sealed class RawGgufBuilder
{
    private readonly MemoryStream _bytes = new();
    private readonly BinaryWriter _w;

    public RawGgufBuilder() => _w = new BinaryWriter(_bytes, Encoding.UTF8, leaveOpen: true);

    public long Position => _bytes.Length;

    public RawGgufBuilder Header(uint version, ulong tensorCount, ulong kvCount, string magic = "GGUF")
    {
        _w.Write(Encoding.ASCII.GetBytes(magic));
        _w.Write(version);
        _w.Write(tensorCount);
        _w.Write(kvCount);
        return this;
    }

    public RawGgufBuilder U8(byte v) { _w.Write(v); return this; }
    public RawGgufBuilder U32(uint v) { _w.Write(v); return this; }
    public RawGgufBuilder I32(int v) { _w.Write(v); return this; }
    public RawGgufBuilder U64(ulong v) { _w.Write(v); return this; }
    public RawGgufBuilder F32(float v) { _w.Write(v); return this; }
    public RawGgufBuilder Bytes(params byte[] v) { _w.Write(v); return this; }

    public RawGgufBuilder Str(string s) => StrBytes(Encoding.UTF8.GetBytes(s));

    public RawGgufBuilder StrBytes(byte[] utf8)
    {
        _w.Write((ulong)utf8.Length);
        _w.Write(utf8);
        return this;
    }

    /// <summary>key, type id 4 (uint32), value.</summary>
    public RawGgufBuilder KvU32(string key, uint value) => Str(key).U32(4).U32(value);

    public RawGgufBuilder KvString(string key, string value) => Str(key).U32(8).Str(value);

    public RawGgufBuilder TensorInfo(string name, uint type, ulong offset, params ulong[] dims)
    {
        Str(name).U32((uint)dims.Length);
        foreach (var d in dims)
            U64(d);
        return U32(type).U64(offset);
    }

    public RawGgufBuilder PadTo(int alignment)
    {
        while (_bytes.Length % alignment != 0)
            _w.Write((byte)0);
        return this;
    }

    public RawGgufBuilder Zeros(int count)
    {
        _w.Write(new byte[count]);
        return this;
    }

    public byte[] ToArray()
    {
        _w.Flush();
        return _bytes.ToArray();
    }
}
