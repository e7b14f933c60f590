using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Formats.Llama2c;

/// <summary>
/// Converts a llama2.c checkpoint plus its tokenizer.bin to an all-F32 GGUF "llama" model, producing what
/// llama.cpp's llama-convert-llama2c-to-ggml produces (same tensor names, order, bytes, metadata keys and vocabulary),
/// except where that tool writes a value that misdescribes the model (see <see cref="Convert(string, string, string, string)"/>).
/// </summary>
public static class Llama2cConverter
{
    /// <summary>general.name, as llama.cpp's converter writes it for every model.</summary>
    public const string DefaultModelName = "llama";

    /// <summary>llama2.c's RMSNorm epsilon (hard-coded in run.c and model.py).</summary>
    public const float RmsNormEpsilon = 1e-5f;

    private const int CopyBufferBytes = 1 << 20;

    public static Llama2cConversionResult Convert(string checkpointPath, string tokenizerPath, string outputPath) =>
        Convert(checkpointPath, tokenizerPath, outputPath, DefaultModelName);

    /// <summary>
    /// Reads both inputs in full (validating them) before anything is written; the output appears atomically.
    /// Deliberate differences from llama.cpp's converter:
    /// llama.context_length is the checkpoint's seq_len (llama.cpp writes its unrelated default n_ctx, 128), and
    /// llama.rope.dimension_count is the full head size (llama.cpp caps it at 64, which would make RoPE skip part of
    /// every head for head sizes over 64; llama2.c rotates the whole head).
    /// </summary>
    public static Llama2cConversionResult Convert(string checkpointPath, string tokenizerPath, string outputPath, string modelName)
    {
        ArgumentException.ThrowIfNullOrEmpty(checkpointPath);
        ArgumentException.ThrowIfNullOrEmpty(tokenizerPath);
        ArgumentException.ThrowIfNullOrEmpty(outputPath);
        ArgumentException.ThrowIfNullOrEmpty(modelName);

        using var checkpoint = Llama2cCheckpoint.Open(checkpointPath);
        Llama2cConfig config = checkpoint.Config;
        var vocabulary = Llama2cGgufVocabulary.From(Llama2cTokenizer.Read(tokenizerPath, config.VocabSize));

        var writer = new GgufWriter();
        WriteMetadata(writer, config, vocabulary, modelName);

        // Tensor data is streamed from the checkpoint while the GGUF is written, through one buffer,
        // so converting a multi-gigabyte checkpoint never holds more than that buffer of weights.
        var copyBuffer = new byte[Math.Min(CopyBufferBytes, (int)Math.Min(int.MaxValue, checkpoint.FileSize))];
        int tensorCount = 0;
        long tensorBytes = 0;
        void Add(string name, Llama2cWeight weight, int layer = -1)
        {
            Llama2cTensor tensor = checkpoint.GetTensor(weight, layer);
            // ggml order: ne[0] is the row length, so a row-major [rows, columns] matrix is [columns, rows].
            long[] dims = tensor.IsVector ? [tensor.Columns] : [tensor.Columns, tensor.Rows];
            writer.AddTensor(name, GgmlType.F32, dims, stream => checkpoint.CopyTo(tensor, stream, copyBuffer));
            tensorCount++;
            tensorBytes += tensor.ByteLength;
        }

        // llama2.c floats are little-endian, as GGUF's are, and its row-major [out, in] matrices are exactly ggml's
        // [in, out] layout; its RoPE rotates adjacent pairs like llama.cpp's normal (non-NeoX) mode, so wq/wk need
        // no permutation: every tensor is a byte copy (checked against llama.cpp's stories260K.gguf).
        // Order as llama.cpp writes them.
        Add("token_embd.weight", Llama2cWeight.TokenEmbedding);
        Add("output_norm.weight", Llama2cWeight.FinalNorm);
        // llama.cpp writes a tied classifier out explicitly, as a copy of the embedding.
        Add("output.weight", config.SharedClassifier ? Llama2cWeight.TokenEmbedding : Llama2cWeight.Classifier);

        for (int layer = 0; layer < config.LayerCount; layer++)
        {
            string prefix = $"blk.{layer}.";
            Add(prefix + "attn_q.weight", Llama2cWeight.Query, layer);
            Add(prefix + "attn_k.weight", Llama2cWeight.Key, layer);
            Add(prefix + "attn_v.weight", Llama2cWeight.Value, layer);
            Add(prefix + "attn_output.weight", Llama2cWeight.AttentionOutput, layer);
            Add(prefix + "attn_norm.weight", Llama2cWeight.AttentionNorm, layer);
            Add(prefix + "ffn_gate.weight", Llama2cWeight.FeedForwardGate, layer);
            Add(prefix + "ffn_down.weight", Llama2cWeight.FeedForwardDown, layer);
            Add(prefix + "ffn_up.weight", Llama2cWeight.FeedForwardUp, layer);
            Add(prefix + "ffn_norm.weight", Llama2cWeight.FeedForwardNorm, layer);
        }

        writer.Write(outputPath);
        return new Llama2cConversionResult(outputPath, config, tensorCount, tensorBytes, new FileInfo(outputPath).Length);
    }

    // Same keys, types and order as llama.cpp's save_as_llama_model.
    private static void WriteMetadata(GgufWriter writer, Llama2cConfig config, Llama2cGgufVocabulary vocabulary, string modelName)
    {
        writer.SetMetadata("tokenizer.ggml.tokens", GgufValue.FromArray(GgufArray.Of(vocabulary.Tokens)));
        writer.SetMetadata("tokenizer.ggml.scores", GgufValue.FromArray(GgufArray.Of(vocabulary.Scores)));
        writer.SetMetadata("tokenizer.ggml.token_type", GgufValue.FromArray(GgufArray.Of(vocabulary.TokenTypes)));
        writer.SetMetadata("tokenizer.ggml.model", GgufValue.FromString("llama"));

        writer.SetMetadata("general.architecture", GgufValue.FromString("llama"));
        writer.SetMetadata("general.name", GgufValue.FromString(modelName));

        writer.SetMetadata("tokenizer.ggml.unknown_token_id", GgufValue.FromUInt32(Llama2cGgufVocabulary.UnknownTokenId));
        writer.SetMetadata("tokenizer.ggml.bos_token_id", GgufValue.FromUInt32(Llama2cGgufVocabulary.BosTokenId));
        writer.SetMetadata("tokenizer.ggml.eos_token_id", GgufValue.FromUInt32(Llama2cGgufVocabulary.EosTokenId));
        // "No such token": llama.cpp stores LLAMA_TOKEN_NULL (-1) as uint32, and spells the key "seperator".
        writer.SetMetadata("tokenizer.ggml.seperator_token_id", GgufValue.FromUInt32(uint.MaxValue));
        writer.SetMetadata("tokenizer.ggml.padding_token_id", GgufValue.FromUInt32(uint.MaxValue));

        // llama.cpp writes 128 here (its converter's default n_ctx, unrelated to the model); seq_len is what the model was trained for.
        writer.SetMetadata("llama.context_length", GgufValue.FromUInt32((uint)config.SeqLen));
        writer.SetMetadata("llama.embedding_length", GgufValue.FromUInt32((uint)config.Dim));
        writer.SetMetadata("llama.feed_forward_length", GgufValue.FromUInt32((uint)config.HiddenDim));
        writer.SetMetadata("llama.attention.head_count", GgufValue.FromUInt32((uint)config.HeadCount));
        writer.SetMetadata("llama.attention.head_count_kv", GgufValue.FromUInt32((uint)config.KvHeadCount));
        writer.SetMetadata("llama.block_count", GgufValue.FromUInt32((uint)config.LayerCount));
        // llama.cpp writes min(64, head_size); llama2.c rotates the whole head.
        writer.SetMetadata("llama.rope.dimension_count", GgufValue.FromUInt32((uint)config.HeadSize));
        writer.SetMetadata("llama.attention.layer_norm_rms_epsilon", GgufValue.FromFloat32(RmsNormEpsilon));
    }
}
