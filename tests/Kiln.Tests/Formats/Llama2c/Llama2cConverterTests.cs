using System.Runtime.InteropServices;
using Kiln.Formats.Gguf;
using Kiln.Formats.Llama2c;
using Kiln.Tensors;

namespace Kiln.Tests.Formats.Llama2c;

public class Llama2cConverterTests
{
    [SharedFact]
    public void ConvertsStories260KExactlyLikeLlamaCpp()
    {
        using var files = new Llama2cSampleFiles();
        string output = files.PathOf("stories260K.gguf");
        var result = Llama2cConverter.Convert(SharedData.Path("models", "stories260K.bin"), SharedData.Path("models", "tok512.bin"), output);
        Assert.Equal(48, result.TensorCount);

        using var ours = GgufFile.Open(output);
        using var reference = GgufFile.Open(SharedData.Path("models", "stories260K.gguf"));

        // Tensors: same names in the same order, types, shapes and bytes.
        Assert.Equal(reference.Tensors.Select(t => t.Name), ours.Tensors.Select(t => t.Name));
        foreach (var expected in reference.Tensors)
        {
            var actual = ours.GetTensor(expected.Name);
            Assert.Equal(expected.Type, actual.Type);
            Assert.Equal(expected.Dimensions, actual.Dimensions);
            Assert.True(reference.GetTensorBytes(expected).SequenceEqual(ours.GetTensorBytes(actual)), $"{expected.Name} bytes differ");
        }

        // Metadata: same keys in the same order with the same types and values, except the documented fix:
        // llama.cpp's converter writes its default n_ctx 128 as llama.context_length; the model's seq_len is 512.
        Assert.Equal(reference.MetadataList.Select(kv => kv.Key), ours.MetadataList.Select(kv => kv.Key));
        foreach (var (key, expected) in reference.MetadataList)
        {
            var actual = ours.Metadata[key];
            Assert.Equal(expected.Type, actual.Type);
            if (key == "llama.context_length")
            {
                Assert.Equal(128L, expected.AsInt64());
                Assert.Equal(512L, actual.AsInt64());
                continue;
            }
            if (expected.Type == GgufValueType.Array)
            {
                var (e, a) = (expected.AsArray(), actual.AsArray());
                Assert.Equal(e.ElementType, a.ElementType);
                Assert.Equal(e.Items.Cast<object>(), a.Items.Cast<object>());
            }
            else
            {
                Assert.Equal(expected.Value, actual.Value);
            }
        }
    }

    [SharedFact]
    public void Stories260KFileIsByteIdenticalToLlamaCppExceptContextLength()
    {
        using var files = new Llama2cSampleFiles();
        string output = files.PathOf("stories260K.gguf");
        Llama2cConverter.Convert(SharedData.Path("models", "stories260K.bin"), SharedData.Path("models", "tok512.bin"), output);
        byte[] ours = File.ReadAllBytes(output);
        byte[] reference = File.ReadAllBytes(SharedData.Path("models", "stories260K.gguf"));
        Assert.Equal(reference.Length, ours.Length);

        // The key is stored as u64 length + bytes, then the u32 value type, then the u32 value.
        byte[] key = "llama.context_length"u8.ToArray();
        int valueAt = reference.AsSpan().IndexOf(key) + key.Length + 4;
        Assert.Equal(128u, BitConverter.ToUInt32(reference, valueAt));
        Assert.Equal(512u, BitConverter.ToUInt32(ours, valueAt));
        Array.Copy(reference, valueAt, ours, valueAt, 4);
        Assert.True(reference.AsSpan().SequenceEqual(ours), "outside llama.context_length the files differ");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WritesEveryWeightInGgmlLayout(bool shared)
    {
        using var files = new Llama2cSampleFiles();
        var m = Llama2cSampleFiles.RandomModel(dim: 16, hidden: 24, layers: 2, heads: 4, kvHeads: 2, vocab: 270, seqLen: 8, shared: shared, seed: shared ? 11 : 12);
        var (pieces, scores) = Llama2cSampleFiles.SampleVocabulary(m.Vocab);
        string ckpt = files.PathOf("model.bin"), tok = files.PathOf("tok.bin"), output = files.PathOf("out.gguf");
        File.WriteAllBytes(ckpt, Llama2cSampleFiles.CheckpointBytes(m));
        File.WriteAllBytes(tok, Llama2cSampleFiles.TokenizerBytes(pieces, scores));

        var result = Llama2cConverter.Convert(ckpt, tok, output);

        using var gguf = GgufFile.Open(output);
        Assert.Equal(3 + 9 * m.Layers, gguf.Tensors.Count);
        Assert.Equal(result.TensorCount, gguf.Tensors.Count);
        Assert.Equal(new FileInfo(output).Length, result.OutputBytes);

        // Row-major [rows, cols] source slices must appear as ggml [cols, rows] with element (r, c) at r * cols + c.
        void Check(string name, float[] source, int start, int rows, int cols, bool vector = false)
        {
            var info = gguf.GetTensor(name);
            Assert.Equal(GgmlType.F32, info.Type);
            Assert.Equal(vector ? new long[] { cols } : new long[] { cols, rows }, info.Dimensions);
            var data = MemoryMarshal.Cast<byte, float>(gguf.GetTensorBytes(info));
            Assert.Equal(rows * cols, data.Length);
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < cols; c++)
                    Assert.Equal(source[start + r * cols + c], data[r * cols + c]);
        }

        int d = m.Dim, h = m.Hidden, kv = m.KvDim;
        Check("token_embd.weight", m.Embedding, 0, m.Vocab, d);
        Check("output.weight", shared ? m.Embedding : m.Wcls!, 0, m.Vocab, d);
        Check("output_norm.weight", m.RmsFinal, 0, 1, d, vector: true);
        for (int l = 0; l < m.Layers; l++)
        {
            Check($"blk.{l}.attn_norm.weight", m.RmsAtt, l * d, 1, d, vector: true);
            Check($"blk.{l}.attn_q.weight", m.Wq, l * d * d, d, d);
            Check($"blk.{l}.attn_k.weight", m.Wk, l * kv * d, kv, d);
            Check($"blk.{l}.attn_v.weight", m.Wv, l * kv * d, kv, d);
            Check($"blk.{l}.attn_output.weight", m.Wo, l * d * d, d, d);
            Check($"blk.{l}.ffn_norm.weight", m.RmsFfn, l * d, 1, d, vector: true);
            Check($"blk.{l}.ffn_gate.weight", m.W1, l * h * d, h, d);
            Check($"blk.{l}.ffn_down.weight", m.W2, l * d * h, d, h);
            Check($"blk.{l}.ffn_up.weight", m.W3, l * h * d, h, d);
        }

        Assert.Equal("llama", gguf.GetString("general.architecture"));
        Assert.Equal("llama", gguf.GetString("tokenizer.ggml.model"));
        Assert.Equal(8, gguf.GetInteger("llama.context_length"));
        Assert.Equal(16, gguf.GetInteger("llama.embedding_length"));
        Assert.Equal(24, gguf.GetInteger("llama.feed_forward_length"));
        Assert.Equal(2, gguf.GetInteger("llama.block_count"));
        Assert.Equal(4, gguf.GetInteger("llama.attention.head_count"));
        Assert.Equal(2, gguf.GetInteger("llama.attention.head_count_kv"));
        Assert.Equal(4, gguf.GetInteger("llama.rope.dimension_count"));
        Assert.Equal(1e-5f, gguf.GetFloat("llama.attention.layer_norm_rms_epsilon"));
        Assert.Equal((0, 1, 2), (gguf.GetInteger("tokenizer.ggml.unknown_token_id"), gguf.GetInteger("tokenizer.ggml.bos_token_id"), gguf.GetInteger("tokenizer.ggml.eos_token_id")));

        string[] tokens = gguf.GetArray("tokenizer.ggml.tokens").AsStrings();
        Assert.Equal(m.Vocab, tokens.Length);
        Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], tokens[..4]);
        Assert.Equal("\u2581b", tokens[260]); // " b"
        Assert.Equal("x\u2581y", tokens[266]); // "x y"
        Assert.Equal(scores, gguf.GetArray("tokenizer.ggml.scores").AsFloat32s());
        int[] types = gguf.GetArray("tokenizer.ggml.token_type").AsInt32s();
        Assert.Equal([2, 3, 3, 6], types[..4]);
        Assert.Equal(6, types[258]);
        Assert.Equal(1, types[259]);
    }

    [Fact]
    public void RopeDimensionIsTheWholeHeadAbove64()
    {
        // llama.cpp would write min(64, head_size) = 64 here; llama2.c rotates all 128 dimensions of a head.
        using var files = new Llama2cSampleFiles();
        var m = Llama2cSampleFiles.RandomModel(dim: 256, hidden: 8, layers: 1, heads: 2, kvHeads: 1, vocab: 4, seqLen: 4);
        string ckpt = files.PathOf("model.bin"), tok = files.PathOf("tok.bin"), output = files.PathOf("out.gguf");
        File.WriteAllBytes(ckpt, Llama2cSampleFiles.CheckpointBytes(m));
        File.WriteAllBytes(tok, Llama2cSampleFiles.TokenizerBytes(["<unk>", "\n<s>\n", "\n</s>\n", "a"], [0f, 0f, 0f, -1f]));
        Llama2cConverter.Convert(ckpt, tok, output);
        using var gguf = GgufFile.Open(output);
        Assert.Equal(128, gguf.GetInteger("llama.rope.dimension_count"));
        Assert.Equal(new long[] { 256, 128 }, gguf.GetTensor("blk.0.attn_k.weight").Dimensions);
    }

    [Fact]
    public void WrongTokenizerFailsBeforeWritingAnything()
    {
        using var files = new Llama2cSampleFiles();
        var m = Llama2cSampleFiles.RandomModel(vocab: 40);
        var (pieces, scores) = Llama2cSampleFiles.SampleVocabulary(41);
        string ckpt = files.PathOf("model.bin"), tok = files.PathOf("tok.bin"), output = files.PathOf("out.gguf");
        File.WriteAllBytes(ckpt, Llama2cSampleFiles.CheckpointBytes(m));
        File.WriteAllBytes(tok, Llama2cSampleFiles.TokenizerBytes(pieces, scores));
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cConverter.Convert(ckpt, tok, output));
        Assert.Contains("after 40 tokens", e.Message);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void BadCheckpointFailsBeforeWritingAnything()
    {
        using var files = new Llama2cSampleFiles();
        byte[] bytes = Llama2cSampleFiles.CheckpointBytes(Llama2cSampleFiles.RandomModel());
        string ckpt = files.PathOf("model.bin"), tok = files.PathOf("tok.bin"), output = files.PathOf("out.gguf");
        File.WriteAllBytes(ckpt, bytes[..(bytes.Length / 2)]);
        File.WriteAllBytes(tok, Llama2cSampleFiles.TokenizerBytes(Llama2cSampleFiles.SampleVocabulary(40).Pieces, Llama2cSampleFiles.SampleVocabulary(40).Scores));
        var e = Assert.Throws<Llama2cFormatException>(() => Llama2cConverter.Convert(ckpt, tok, output));
        Assert.Contains("truncated", e.Message);
        Assert.False(File.Exists(output));
    }
}
