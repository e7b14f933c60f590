using Kiln.Formats.Gguf;

namespace Kiln.Tests.Formats.Gguf;

/// <summary>
/// Reading a llama.cpp-written file and writing it back with every kv and tensor in order must reproduce
/// the file byte for byte: proves the writer's layout (order, padding, alignment, value encodings) is the
/// one llama.cpp and gguf-py produce, and that the reader loses nothing.
/// </summary>
public class GgufByteCompatTests
{
    public static TheoryData<string> LlamaCppFiles()
    {
        var data = new TheoryData<string>();
        if (!SharedData.Exists)
        {
            data.Add("(absent)");
            return data;
        }
        data.Add("models/stories260K.gguf");
        foreach (var dir in new[] { "tokenizer", "refs/quant" })
            foreach (var path in Directory.GetFiles(SharedData.Path(dir), "*.gguf").Order(StringComparer.Ordinal))
                data.Add($"{dir}/{System.IO.Path.GetFileName(path)}");
        return data;
    }

    [SharedTheory]
    [MemberData(nameof(LlamaCppFiles))]
    public void RewritingReproducesTheFileExactly(string relative)
    {
        string path = SharedData.Path(relative.Split('/'));
        using var f = GgufFile.Open(path);

        var writer = new GgufWriter(f.Version);
        foreach (var (key, value) in f.MetadataList)
            writer.SetMetadata(key, value);
        foreach (var t in f.Tensors)
        {
            var info = t;
            writer.AddTensor(t.Name, t.Type, t.Dimensions, s => s.Write(f.GetTensorBytes(info)));
        }
        var output = new MemoryStream();
        writer.Write(output);

        byte[] original = File.ReadAllBytes(path);
        byte[] rewritten = output.ToArray();
        Assert.Equal(original.Length, rewritten.Length);
        int firstDifference = original.AsSpan().CommonPrefixLength(rewritten);
        Assert.True(firstDifference == original.Length, $"{relative}: first difference at byte {firstDifference}");
    }
}
