using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Tests.Formats.Gguf;

/// <summary>Reads files written by llama.cpp / gguf-py (../shared): the reader must agree with what those tools wrote.</summary>
public class GgufSharedFileTests
{
    [SharedFact]
    public void Stories260KMetadataAndTensorsMatchLlamaCpp()
    {
        using var f = GgufFile.Open(SharedData.Path("models", "stories260K.gguf"));

        Assert.Equal(3u, f.Version);
        Assert.Equal(1185376L, f.FileLength);
        Assert.Equal(32u, f.Alignment);
        // Values below were read with ../shared/tools/gguf_lib.py (an independent reader).
        Assert.Equal(19, f.MetadataList.Count);
        Assert.Equal("tokenizer.ggml.tokens", f.MetadataList[0].Key);
        Assert.Equal("llama.attention.layer_norm_rms_epsilon", f.MetadataList[18].Key);
        Assert.Equal(14176L, f.DataOffset);
        Assert.Equal("llama", f.GetString("general.architecture"));
        Assert.Equal(64L, f.GetInteger("llama.embedding_length"));
        Assert.Equal(5L, f.GetInteger("llama.block_count"));
        Assert.Equal(172L, f.GetInteger("llama.feed_forward_length"));
        Assert.Equal(128L, f.GetInteger("llama.context_length"));
        Assert.Equal(4L, f.GetInteger("llama.attention.head_count_kv"));
        Assert.Equal(4294967295L, f.GetInteger("tokenizer.ggml.padding_token_id"));
        Assert.Equal(1e-5f, f.GetFloat("llama.attention.layer_norm_rms_epsilon"));
        Assert.Equal(GgufValueType.UInt32, f.Metadata["llama.block_count"].Type);

        var tokens = f.GetArray("tokenizer.ggml.tokens");
        Assert.Equal(GgufValueType.String, tokens.ElementType);
        Assert.Equal(512, tokens.Count);
        string[] strings = tokens.AsStrings();
        Assert.Equal(["<unk>", "<s>", "</s>", "<0x00>"], strings[..4]);
        Assert.Equal(512, f.GetArray("tokenizer.ggml.scores").AsFloat32s().Length);
        int[] types = f.GetArray("tokenizer.ggml.token_type").AsInt32s();
        Assert.Equal([2, 3, 3, 6], types[..4]);

        Assert.Equal(48, f.Tensors.Count);
        var embd = f.GetTensor("token_embd.weight");
        Assert.Same(embd, f.Tensors[0]);
        Assert.Equal(GgmlType.F32, embd.Type);
        Assert.Equal([64L, 512L], embd.Dimensions);
        Assert.Equal(0UL, embd.Offset);
        Assert.Equal(64L * 512 * 4, embd.ByteSize);
        Assert.Equal(64L, embd.RowLength);
        Assert.Equal(512L, embd.Rows);

        var norm = f.GetTensor("output_norm.weight");
        Assert.Equal([64L], norm.Dimensions);
        Assert.Equal(131072UL, norm.Offset);
        var down = f.GetTensor("blk.4.ffn_down.weight");
        Assert.Equal([172L, 64L], down.Dimensions);
        Assert.Equal(1082880UL, down.Offset);
        Assert.Null(f.FindTensor("blk.5.attn_q.weight"));
        var missing = Assert.Throws<KeyNotFoundException>(() => f.GetTensor("nope"));
        Assert.Contains("'nope'", missing.Message);

        // Tensor bytes come straight from the file at DataOffset + Offset.
        byte[] raw = File.ReadAllBytes(f.Path);
        var bytes = f.GetTensorBytes(norm);
        Assert.True(bytes.SequenceEqual(raw.AsSpan((int)(f.DataOffset + (long)norm.Offset), (int)norm.ByteSize)));
        // RMS-norm weights of a trained model: finite, non-zero.
        float w0 = BitConverter.ToSingle(bytes[..4]);
        Assert.True(float.IsFinite(w0) && w0 != 0);
    }

    public static TheoryData<string> TokenizerFiles()
    {
        var data = new TheoryData<string>();
        if (SharedData.Exists)
            foreach (var path in Directory.GetFiles(SharedData.Path("tokenizer"), "*.gguf").Order(StringComparer.Ordinal))
                data.Add(System.IO.Path.GetFileName(path));
        else
            data.Add("(absent)");
        return data;
    }

    [SharedTheory]
    [MemberData(nameof(TokenizerFiles))]
    public void VocabOnlyFilesParse(string name)
    {
        using var f = GgufFile.Open(SharedData.Path("tokenizer", name));
        Assert.Equal(3u, f.Version);
        Assert.Empty(f.Tensors);
        var tokens = f.GetArray("tokenizer.ggml.tokens");
        Assert.Equal(GgufValueType.String, tokens.ElementType);
        Assert.True(tokens.Count >= 30000, $"{name}: {tokens.Count} tokens");
        Assert.NotNull(f.TryGetString("tokenizer.ggml.model"));
        Assert.Equal(tokens.Count, f.GetArray("tokenizer.ggml.token_type").Count);
    }

    [SharedFact]
    public void VocabTokenCountsMatchFormatNotes()
    {
        // Counts from ../shared/tokenizer/FORMAT.md (written from llama.cpp's own listing).
        (string File, string Model, int Tokens)[] expected =
        [
            ("ggml-vocab-baichuan.gguf", "llama", 64000),
            ("ggml-vocab-bert-bge.gguf", "bert", 30522),
            ("ggml-vocab-deepseek-llm.gguf", "gpt2", 102400),
            ("ggml-vocab-gpt-2.gguf", "gpt2", 50257),
            ("ggml-vocab-llama-spm.gguf", "llama", 32000),
            ("ggml-vocab-phi-3.gguf", "llama", 32064),
        ];
        foreach (var (file, model, count) in expected)
        {
            using var f = GgufFile.Open(SharedData.Path("tokenizer", file));
            Assert.Equal(model, f.GetString("tokenizer.ggml.model"));
            Assert.Equal(count, f.GetArray("tokenizer.ggml.tokens").Count);
        }
    }

    public static TheoryData<string> QuantFiles()
    {
        var data = new TheoryData<string>();
        if (SharedData.Exists)
            foreach (var path in Directory.GetFiles(SharedData.Path("refs", "quant"), "*.gguf").Order(StringComparer.Ordinal))
                data.Add(System.IO.Path.GetFileName(path));
        else
            data.Add("(absent)");
        return data;
    }

    [SharedTheory]
    [MemberData(nameof(QuantFiles))]
    public void QuantizedFilesParse(string name)
    {
        using var f = GgufFile.Open(SharedData.Path("refs", "quant", name));
        Assert.Equal(256L, f.GetInteger("llama.embedding_length"));
        Assert.Equal(2L, f.GetInteger("llama.block_count"));
        Assert.Equal(3 + 2 * 9, f.Tensors.Count); // token_embd, output_norm, output + 9 per layer
        var norm = f.GetTensor("output_norm.weight");
        Assert.Equal(GgmlType.F32, norm.Type);
        Assert.Equal([256L], norm.Dimensions);

        // --pure files: every 2-D weight has the named type (token_embd included).
        const string pure = "-pure.gguf";
        if (name.EndsWith(pure, StringComparison.Ordinal))
        {
            string typeName = name["tiny256-".Length..^pure.Length];
            var expected = Enum.Parse<GgmlType>(typeName);
            foreach (var t in f.Tensors.Where(t => t.Dimensions.Length == 2 && t.Name != "token_embd.weight"))
                Assert.True(expected == t.Type, $"{t.Name}: {t.Type}, expected {expected}");
        }
        var q = f.GetTensor("blk.0.attn_q.weight");
        Assert.Equal([256L, 256L], q.Dimensions);
        Assert.Equal(GgmlTypeTraits.RowBytes(q.Type, 256) * 256, q.ByteSize);
    }
}
