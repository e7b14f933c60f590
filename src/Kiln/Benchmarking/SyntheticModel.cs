using System.Runtime.InteropServices;
using Kiln.Formats.Gguf;
using Kiln.Models.Llama;
using Kiln.Tensors;

namespace Kiln.Benchmarking;

/// <summary>
/// A Llama-family model with random weights of a chosen shape and type, for measuring speed without
/// downloading a model. The GGUF bytes are written to a temporary file that is loaded (mapped or copied, as a
/// real model file would be) and then deleted at once (on Windows, when disposed): memory stays at the model's
/// size, exactly as when running a real model file.
/// </summary>
public sealed class SyntheticModel : IDisposable
{
    /// <summary>Tensor data is produced and written in pieces of about this size.</summary>
    private const int ChunkBytes = 1 << 20;

    private readonly string _path;

    private SyntheticModel(SyntheticModelShape shape, SyntheticWeightScheme scheme, LlamaModel model, string path)
    {
        Shape = shape;
        Scheme = scheme;
        Model = model;
        _path = path;
    }

    public SyntheticModelShape Shape { get; }
    public SyntheticWeightScheme Scheme { get; }
    public LlamaModel Model { get; }

    /// <summary>
    /// Builds and loads the model. <paramref name="directory"/> is where the temporary file goes (default: the
    /// system's temporary folder); NotSupportedException if the scheme needs a type the kernels lack.
    /// <paramref name="loadMode"/> is applied to the temporary file as to a real model (Auto by default, as for
    /// <see cref="LlamaModel.Load"/>), so that bench measures what run measures.
    /// </summary>
    public static SyntheticModel Create(SyntheticModelShape shape, SyntheticWeightScheme scheme, ulong seed = 1, string? directory = null,
        GgufLoadMode loadMode = GgufLoadMode.Auto)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(scheme);
        var missing = scheme.UnsupportedTypesFor(shape);
        if (missing.Count > 0)
            throw new NotSupportedException(
                $"{shape.Name} as {scheme.Name} needs {string.Join(", ", missing.Select(GgmlTypeTraits.Name))} weights, which Kiln does not support yet");

        var writer = CreateWriter(shape, scheme, seed);
        string path = Path.Combine(directory ?? Path.GetTempPath(), $"kiln-synthetic-{shape.Name}-{Guid.NewGuid():N}.gguf");
        GgufFile? file = null;
        try
        {
            // No flush to disk: the file only has to outlive this process's mapping of it.
            using (var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, ChunkBytes))
                writer.Write(stream);
            file = GgufFile.Open(path, loadMode);
            var model = new LlamaModel(file, ownsFile: true);
            TryDelete(path);
            return new SyntheticModel(shape, scheme, model, path);
        }
        catch
        {
            file?.Dispose();
            TryDelete(path);
            throw;
        }
    }

    /// <summary>
    /// A writer holding the model's metadata and tensors, whose data is generated as it is written (so even a
    /// multi-gigabyte model never sits in memory twice). The file has no vocabulary: only kiln bench's
    /// random token ids can drive it.
    /// </summary>
    public static GgufWriter CreateWriter(SyntheticModelShape shape, SyntheticWeightScheme scheme, ulong seed = 1)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(scheme);
        if (shape.HeadCount <= 0 || shape.EmbeddingLength % shape.HeadCount != 0 || shape.HeadCountKv <= 0 || shape.HeadCount % shape.HeadCountKv != 0)
            throw new ArgumentException($"{shape.Name}: {shape.HeadCount} heads, {shape.HeadCountKv} kv heads do not divide embedding {shape.EmbeddingLength}", nameof(shape));

        string a = shape.Architecture;
        var w = new GgufWriter();
        w.SetMetadata("general.architecture", GgufValue.FromString(a));
        w.SetMetadata("general.name", GgufValue.FromString($"{shape.Name} {scheme.Name} (random weights)"));
        w.SetMetadata($"{a}.context_length", GgufValue.FromUInt32((uint)shape.ContextLength));
        w.SetMetadata($"{a}.embedding_length", GgufValue.FromUInt32((uint)shape.EmbeddingLength));
        w.SetMetadata($"{a}.block_count", GgufValue.FromUInt32((uint)shape.BlockCount));
        w.SetMetadata($"{a}.feed_forward_length", GgufValue.FromUInt32((uint)shape.FeedForwardLength));
        w.SetMetadata($"{a}.attention.head_count", GgufValue.FromUInt32((uint)shape.HeadCount));
        w.SetMetadata($"{a}.attention.head_count_kv", GgufValue.FromUInt32((uint)shape.HeadCountKv));
        w.SetMetadata($"{a}.attention.layer_norm_rms_epsilon", GgufValue.FromFloat32(shape.RmsEpsilon));
        w.SetMetadata($"{a}.rope.freq_base", GgufValue.FromFloat32(shape.RopeFreqBase));
        w.SetMetadata($"{a}.rope.dimension_count", GgufValue.FromUInt32((uint)shape.HeadDim));
        w.SetMetadata($"{a}.vocab_size", GgufValue.FromUInt32((uint)shape.VocabSize));
        w.SetMetadata("tokenizer.ggml.bos_token_id", GgufValue.FromUInt32((uint)shape.BosTokenId));

        // One generator for the whole file: vectors are drawn as they are added and matrices as they are written,
        // both in a fixed order, so the bytes depend only on the seed.
        var random = new RandomWeightGenerator(seed);
        var matrices = SyntheticWeightScheme.WeightMatrices(shape).ToDictionary(m => m.Name);

        void Matrix(string name)
        {
            var (_, layer, columns, rows) = matrices[name];
            var type = scheme.TypeOf(shape, name, layer, columns);
            w.AddTensor(name, type, [columns, rows], stream => WriteRandom(stream, random, type, GgmlTypeTraits.RowBytes(type, columns) * rows));
        }
        void Vector(string name, int length, float center, float spread) =>
            w.AddTensor(name, GgmlType.F32, [length], MemoryMarshal.AsBytes(random.Floats(length, center, spread).AsSpan()).ToArray());

        int d = shape.EmbeddingLength;
        Matrix("token_embd.weight");
        Vector("output_norm.weight", d, 1f, 0.1f);
        if (!shape.TiedEmbeddings)
            Matrix("output.weight");
        for (int l = 0; l < shape.BlockCount; l++)
        {
            string p = $"blk.{l}.";
            Vector(p + "attn_norm.weight", d, 1f, 0.1f);
            Matrix(p + "attn_q.weight");
            Matrix(p + "attn_k.weight");
            Matrix(p + "attn_v.weight");
            if (shape.AttentionBiases)
            {
                Vector(p + "attn_q.bias", shape.QueryDim, 0f, 0.1f);
                Vector(p + "attn_k.bias", shape.KvDim, 0f, 0.1f);
                Vector(p + "attn_v.bias", shape.KvDim, 0f, 0.1f);
            }
            Matrix(p + "attn_output.weight");
            Vector(p + "ffn_norm.weight", d, 1f, 0.1f);
            Matrix(p + "ffn_gate.weight");
            Matrix(p + "ffn_up.weight");
            Matrix(p + "ffn_down.weight");
        }
        return w;
    }

    private static void WriteRandom(Stream stream, RandomWeightGenerator random, GgmlType type, long bytes)
    {
        int blockBytes = GgmlTypeTraits.BlockBytes(type);
        var buffer = new byte[Math.Max(1, ChunkBytes / blockBytes) * blockBytes];
        for (long left = bytes; left > 0;)
        {
            int n = (int)Math.Min(left, buffer.Length);
            var piece = buffer.AsSpan(0, n);
            random.Fill(type, piece);
            stream.Write(piece);
            left -= n;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Windows refuses to delete a mapped file; Dispose deletes it after unmapping.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    public void Dispose()
    {
        Model.Dispose();
        TryDelete(_path);
    }
}
