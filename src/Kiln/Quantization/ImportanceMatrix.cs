using System.Text;

namespace Kiln.Quantization;

/// <summary>
/// Per-weight input-column importance in llama.cpp's legacy imatrix.dat layout (b4748, little-endian):
/// int32 entry count; per entry int32 name length, the name's bytes, int32 ncall, int32 value count, that many
/// float32 values; then int32 chunk count and int32 length + bytes of the calibration file's name.
/// </summary>
public sealed class ImportanceMatrix
{
    public ImportanceMatrix(IReadOnlyDictionary<string, ImportanceMatrixEntry> entries, int chunks, string dataset)
    {
        Entries = entries;
        Chunks = chunks;
        Dataset = dataset;
    }

    public IReadOnlyDictionary<string, ImportanceMatrixEntry> Entries { get; }

    /// <summary>Calibration chunks evaluated (llama.cpp's m_last_call).</summary>
    public int Chunks { get; }

    /// <summary>Name of the calibration text.</summary>
    public string Dataset { get; }

    public void Write(string path)
    {
        string temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write))
        using (var w = new BinaryWriter(stream, Encoding.UTF8))
        {
            w.Write(Entries.Count);
            // sorted so that the same statistics always give the same bytes
            foreach (var (name, e) in Entries.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                byte[] bytes = Encoding.UTF8.GetBytes(name);
                w.Write(bytes.Length);
                w.Write(bytes);
                w.Write(e.Calls);
                w.Write(e.Values.Length);
                foreach (float v in e.Values)
                    w.Write(v);
            }
            w.Write(Chunks);
            byte[] dataset = Encoding.UTF8.GetBytes(Dataset);
            w.Write(dataset.Length);
            w.Write(dataset);
        }
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Reads an imatrix.dat; InvalidDataException, naming the file, when it is not one. The trailer is optional, as in llama.cpp.</summary>
    public static ImportanceMatrix Read(string path)
    {
        using var stream = File.OpenRead(path);
        using var r = new BinaryReader(stream, Encoding.UTF8);
        try
        {
            int count = r.ReadInt32();
            if (count < 1 || count > 1_000_000)
                throw new InvalidDataException($"{path} is not an importance matrix (entry count {count})");
            var entries = new Dictionary<string, ImportanceMatrixEntry>(StringComparer.Ordinal);
            for (int i = 0; i < count; i++)
            {
                int len = r.ReadInt32();
                if (len < 1 || len > 4096)
                    throw new InvalidDataException($"{path} is not an importance matrix (entry {i}: name length {len})");
                string name = Encoding.UTF8.GetString(ReadExactly(r, len));
                int calls = r.ReadInt32();
                int n = r.ReadInt32();
                if (n < 1 || (long)n * sizeof(float) > stream.Length - stream.Position)
                    throw new InvalidDataException($"{path} is not an importance matrix (entry '{name}': {n} values)");
                var values = new float[n];
                for (int j = 0; j < n; j++)
                    values[j] = r.ReadSingle();
                entries[name] = new ImportanceMatrixEntry(calls, values);
            }
            int chunks = 0;
            string dataset = "";
            if (stream.Length - stream.Position >= 8)
            {
                chunks = r.ReadInt32();
                int len = r.ReadInt32();
                if (len >= 0 && len <= stream.Length - stream.Position)
                    dataset = Encoding.UTF8.GetString(ReadExactly(r, len));
            }
            return new ImportanceMatrix(entries, chunks, dataset);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"{path} is not an importance matrix (truncated)");
        }
    }

    /// <summary>
    /// The per-column weights for <paramref name="tensorName"/>, or null when the matrix has none for it;
    /// InvalidDataException when its length is not the tensor's row length (an imatrix made for another model).
    /// </summary>
    public float[]? ColumnWeights(string tensorName, long rowLength)
    {
        if (!Entries.TryGetValue(tensorName, out var e))
            return null;
        if (e.Values.Length != rowLength)
            throw new InvalidDataException(
                $"the importance matrix has {e.Values.Length} values for '{tensorName}', whose rows are {rowLength} long: it was made for another model");
        return e.ColumnWeights();
    }

    private static byte[] ReadExactly(BinaryReader r, int count)
    {
        byte[] bytes = r.ReadBytes(count);
        if (bytes.Length != count)
            throw new EndOfStreamException();
        return bytes;
    }
}
