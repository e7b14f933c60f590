using System.Runtime.InteropServices;
using Kiln.Formats.Gguf;
using Kiln.Models.Llama;
using Kiln.Tensors;
using Kiln.Training;

namespace Kiln.Models.Lora;

/// <summary>
/// A LoRA adapter for a Llama-family model, in llama.cpp's adapter GGUF format: general.type = adapter,
/// adapter.type = lora, adapter.lora.alpha, and per adapted matrix "NAME.lora_a" (ne [in, rank]) and "NAME.lora_b"
/// (ne [rank, out]). The update is scaled by alpha/rank as llama.cpp does (by 1 when alpha is 0).
/// </summary>
public sealed class LoraAdapter
{
    private readonly Dictionary<(int Layer, LoraTarget Target), LoraWeight> _byTarget = [];

    public LoraAdapter(string architecture, float alpha, IEnumerable<LoraWeight> weights)
    {
        Architecture = architecture;
        Alpha = alpha;
        foreach (var w in weights)
            if (!_byTarget.TryAdd((w.Layer, w.Target), w))
                throw new ModelFormatException($"two LoRA updates for {w.TensorName}");
        if (_byTarget.Count == 0)
            throw new ModelFormatException("a LoRA adapter needs at least one adapted matrix");
        Weights = [.. _byTarget.Values.OrderBy(w => w.Layer).ThenBy(w => w.Target)];
    }

    public string Architecture { get; }
    public float Alpha { get; }
    public IReadOnlyList<LoraWeight> Weights { get; }

    /// <summary>The rank of the first matrix (finetune gives every matrix the same rank).</summary>
    public int Rank => Weights[0].Rank;

    /// <summary>llama.cpp's scale: alpha / rank, or 1 when alpha is 0 (per matrix, since ranks may differ).</summary>
    public float ScaleOf(LoraWeight w) => Alpha == 0 ? 1f : Alpha / w.Rank;

    public LoraWeight? Find(int layer, LoraTarget target) => _byTarget.GetValueOrDefault((layer, target));

    /// <summary>A fresh adapter as the LoRA paper starts one: B = 0 (so the model is unchanged), A uniform in ±1/√in (PEFT's Kaiming bound).</summary>
    public static LoraAdapter Create(LlamaConfig config, int rank, float alpha, IReadOnlyList<LoraTarget> targets, ulong seed)
    {
        if (rank <= 0)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, "LoRA rank must be at least 1");
        var random = new TrainingRandom(seed);
        var weights = new List<LoraWeight>();
        for (int l = 0; l < config.BlockCount; l++)
        {
            foreach (var t in targets)
            {
                var (inDim, outDim) = LoraTargetNames.Shape(config, t);
                if (rank > Math.Min(inDim, outDim))
                    throw new ArgumentOutOfRangeException(nameof(rank), rank, $"LoRA rank {rank} exceeds the smaller side ({Math.Min(inDim, outDim)}) of {LoraTargetNames.TensorName(l, t)}");
                var w = new LoraWeight(l, t, rank, inDim, outDim);
                double bound = 1.0 / Math.Sqrt(inDim);
                for (int i = 0; i < w.A.Length; i++)
                    w.A[i] = (float)((random.NextDouble() * 2 - 1) * bound);
                weights.Add(w);
            }
        }
        return new LoraAdapter(config.Architecture, alpha, weights);
    }

    /// <summary>Checks the adapter fits <paramref name="config"/>: same architecture, existing blocks, matching shapes.</summary>
    public void Validate(LlamaConfig config, string modelName)
    {
        if (Architecture != config.Architecture)
            throw new ModelFormatException($"the LoRA adapter is for architecture '{Architecture}', the model {modelName} is '{config.Architecture}'");
        foreach (var w in Weights)
        {
            if (w.Layer >= config.BlockCount)
                throw new ModelFormatException($"the LoRA adapter adapts {w.TensorName}, but {modelName} has only {config.BlockCount} blocks (an adapter for another model?)");
            var (inDim, outDim) = LoraTargetNames.Shape(config, w.Target);
            if (w.InDim != inDim || w.OutDim != outDim)
                throw new ModelFormatException(
                    $"the LoRA adapter's {w.TensorName} is [{w.OutDim} × {w.InDim}], the model {modelName}'s is [{outDim} × {inDim}] (an adapter for another model?)");
        }
    }

    public static LoraAdapter Load(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"LoRA adapter not found: {path}", path);
        using var file = GgufFile.Open(path);
        string? type = file.TryGetString("general.type");
        if (type != "adapter")
            throw new ModelFormatException($"{path} is not a LoRA adapter (general.type is {(type is null ? "missing" : $"'{type}'")}, expected 'adapter')");
        string? adapterType = file.TryGetString("adapter.type");
        if (adapterType != "lora")
            throw new ModelFormatException($"{path}: adapter.type is {(adapterType is null ? "missing" : $"'{adapterType}'")}, expected 'lora'");
        string arch = file.TryGetString("general.architecture") ?? throw new ModelFormatException($"{path}: missing general.architecture");
        float alpha = file.TryGetFloat("adapter.lora.alpha") ?? 0f;

        var pairs = new Dictionary<string, (GgufTensorInfo? A, GgufTensorInfo? B)>();
        foreach (var t in file.Tensors)
        {
            bool isA = t.Name.EndsWith(".lora_a", StringComparison.Ordinal);
            if (!isA && !t.Name.EndsWith(".lora_b", StringComparison.Ordinal))
                throw new ModelFormatException($"{path}: tensor '{t.Name}' is neither a .lora_a nor a .lora_b");
            string baseName = t.Name[..^".lora_a".Length];
            var p = pairs.GetValueOrDefault(baseName);
            pairs[baseName] = isA ? (t, p.B) : (p.A, t);
        }
        var weights = new List<LoraWeight>();
        foreach (var (name, (a, b)) in pairs)
        {
            if (a is null || b is null)
                throw new ModelFormatException($"{path}: the LoRA pair of {name} is missing its {(a is null ? "lora_a" : "lora_b")}");
            if (!LoraTargetNames.TryParseTensorName(name, out int layer, out var target))
                throw new ModelFormatException($"{path}: {name} is not a matrix Kiln applies adapters to (q,k,v,o,gate,up,down of a block)");
            if (a.Dimensions.Length != 2 || b.Dimensions.Length != 2)
                throw new ModelFormatException($"{path}: {name}.lora_a and .lora_b must be 2-D");
            int inDim = checked((int)a.Dimensions[0]), rank = checked((int)a.Dimensions[1]);
            int bRank = checked((int)b.Dimensions[0]), outDim = checked((int)b.Dimensions[1]);
            if (rank != bRank)
                throw new ModelFormatException($"{path}: {name}.lora_a has rank {rank} (ne [{inDim}, {rank}]) but .lora_b has {bRank} (ne [{bRank}, {outDim}]); lora_a must be [in, rank] and lora_b [rank, out]");
            weights.Add(new LoraWeight(layer, target, rank, inDim, outDim, Read(file, a), Read(file, b)));
        }
        if (weights.Count == 0)
            throw new ModelFormatException($"{path}: the adapter holds no LoRA tensors");
        return new LoraAdapter(arch, alpha, weights);
    }

    private static float[] Read(GgufFile file, GgufTensorInfo t)
    {
        if (!RowKernels.Supports(t.Type))
            throw new ModelFormatException($"{file.Path}: {t.Name} has type {GgmlTypeTraits.Name(t.Type)}, which Kiln cannot read");
        int cols = checked((int)t.Dimensions[0]), rows = checked((int)t.Dimensions[1]);
        var bytes = file.GetTensorBytes(t);
        int rowBytes = checked((int)GgmlTypeTraits.RowBytes(t.Type, cols));
        var result = new float[rows * cols];
        for (int r = 0; r < rows; r++)
            RowKernels.Dequantize(t.Type, bytes.Slice(r * rowBytes, rowBytes), result.AsSpan(r * cols, cols));
        return result;
    }

    /// <summary>Writes the adapter as F32 tensors in llama.cpp's layout.</summary>
    public void Save(string path, string name = "kiln lora")
    {
        var w = new GgufWriter();
        w.SetMetadata("general.architecture", GgufValue.FromString(Architecture));
        w.SetMetadata("general.type", GgufValue.FromString("adapter"));
        w.SetMetadata("general.name", GgufValue.FromString(name));
        w.SetMetadata("adapter.type", GgufValue.FromString("lora"));
        w.SetMetadata("adapter.lora.alpha", GgufValue.FromFloat32(Alpha));
        foreach (var lw in Weights)
        {
            w.AddTensor(lw.TensorName + ".lora_a", GgmlType.F32, [lw.InDim, lw.Rank], MemoryMarshal.AsBytes(lw.A.AsSpan()).ToArray());
            w.AddTensor(lw.TensorName + ".lora_b", GgmlType.F32, [lw.Rank, lw.OutDim], MemoryMarshal.AsBytes(lw.B.AsSpan()).ToArray());
        }
        w.Write(path);
    }
}
