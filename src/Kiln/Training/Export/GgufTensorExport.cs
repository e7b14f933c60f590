using System.Runtime.InteropServices;
using Kiln.Formats.Gguf;
using Kiln.Tensors;
using Kiln.Training.Data;

namespace Kiln.Training.Export;

/// <summary>
/// What both trained-model exporters share: the argument checks, llama.cpp's file-type code, and adding a trained
/// parameter (or a row range of it) to a <see cref="GgufWriter"/> — matrices in the export type, vectors (norms,
/// biases) in F32 as llama.cpp keeps them, embeddings and classifiers grown by the tokenizer's extra GGUF tokens.
/// </summary>
internal sealed class GgufTensorExport(GgufWriter writer, ParameterSet<float> parameters, TrainingTokenizer tokenizer, GgmlType type)
{
    /// <summary>The one error for an export type, a Q8_0 shape or a tokenizer that does not fit the model.</summary>
    public static void CheckArguments(TrainingConfig config, TrainingTokenizer tokenizer, GgmlType type)
    {
        if (type != GgmlType.F32 && type != GgmlType.F16 && type != GgmlType.Q8_0)
            throw new ArgumentException($"export type {type} is not supported (f32, f16, q8_0)", nameof(type));
        if (type == GgmlType.Q8_0 && (config.Dim % Q8_0.BlockSize != 0 || config.FfnDim % Q8_0.BlockSize != 0))
            throw new TrainingConfigException(
                $"q8_0 stores rows in blocks of {Q8_0.BlockSize}: dim ({config.Dim}) and ffn ({config.FfnDim}) must be multiples of {Q8_0.BlockSize}");
        if (tokenizer.VocabSize > config.Vocab)
            throw new TrainingConfigException($"the tokenizer has {tokenizer.VocabSize} tokens, more than the model's vocab of {config.Vocab}");
    }

    /// <summary>llama.cpp's general.file_type: LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 / MOSTLY_Q8_0.</summary>
    public static uint FileType(GgmlType type) => type == GgmlType.F32 ? 0u : type == GgmlType.F16 ? 1u : 7u;

    /// <summary>
    /// Adds rows [firstRow, firstRow + rows) of parameter <paramref name="source"/> (all of it by default) as
    /// <paramref name="tensorName"/>, followed by <paramref name="extraRows"/> copies of the tokenizer's
    /// <see cref="TrainingTokenizer.GgufExtraTokenRow"/> (the byte-fallback tokens of an embedding or classifier).
    /// </summary>
    public void Add(string tensorName, string source, int firstRow = 0, int rows = -1, int extraRows = 0)
    {
        var p = parameters[source];
        bool vector = p.Shape.Length == 1;
        int cols = vector ? p.Shape[0] : p.Shape[1];
        if (rows < 0)
            rows = vector ? 1 : p.Shape[0];
        ReadOnlyMemory<float> data = parameters.Values.AsMemory(p.Offset + firstRow * cols, rows * cols);
        if (extraRows > 0)
        {
            data = AppendRowCopies(data.Span, cols, extraRows, tokenizer.GgufExtraTokenRow);
            rows += extraRows;
        }
        GgmlType t = vector ? GgmlType.F32 : type;
        long[] dims = vector ? [cols] : [cols, rows];
        writer.AddTensor(tensorName, t, dims, stream => WriteData(stream, data.Span, t));
    }

    private static float[] AppendRowCopies(ReadOnlySpan<float> data, int cols, int extraRows, int sourceRow)
    {
        int rows = data.Length / cols;
        var grown = new float[(rows + extraRows) * cols];
        data.CopyTo(grown);
        var copied = data.Slice(sourceRow * cols, cols);
        for (int r = rows; r < rows + extraRows; r++)
            copied.CopyTo(grown.AsSpan(r * cols, cols));
        return grown;
    }

    /// <summary>Matrix data as F32, F16 or Q8_0 (ggml's block layout).</summary>
    private static void WriteData(Stream stream, ReadOnlySpan<float> data, GgmlType type)
    {
        if (type == GgmlType.F32)
        {
            stream.Write(MemoryMarshal.AsBytes(data));
            return;
        }
        if (type == GgmlType.Q8_0)
        {
            var blocks = new byte[data.Length / Q8_0.BlockSize * Q8_0.BlockBytes];
            Q8_0.Quantize(data, blocks);
            stream.Write(blocks);
            return;
        }
        var bytes = new byte[data.Length * 2];
        F16.Quantize(data, bytes);
        stream.Write(bytes);
    }
}
