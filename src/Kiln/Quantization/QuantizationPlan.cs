using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Quantization;

/// <summary>
/// Decides every tensor's output type the way llama.cpp's llama_model_quantize does (src/llama-quant.cpp,
/// b4748): which tensors are quantized at all, the per-tensor rules of the K mixes (llama_tensor_get_type:
/// attn_v / ffn_down get more bits in the layers use_more_bits picks, output.weight Q6_K …), and a fallback
/// when a row length is not a multiple of the chosen type's block. Tensors are listed in llama.cpp's
/// processing order (non-layer tensors by name, then layer by layer, by name within a layer), which the
/// per-layer counters depend on and the output file follows.
/// </summary>
public sealed class QuantizationPlan
{
    private readonly QuantizationMix _mix;
    private readonly string _arch;
    private readonly int _gqa;
    private readonly int _experts;
    private readonly bool _hasOutput;
    private readonly int _attentionV;
    private readonly int _ffnDown;
    private int _iAttentionV;
    private int _iFfnDown;

    private QuantizationPlan(GgufFile source, QuantizationOptions options)
    {
        _mix = options.Mix;
        _arch = source.TryGetString("general.architecture") ?? "";
        long heads = source.TryGetInteger($"{_arch}.attention.head_count") ?? 0;
        long kvHeads = source.TryGetInteger($"{_arch}.attention.head_count_kv") ?? heads;
        _gqa = kvHeads > 0 ? (int)(heads / kvHeads) : 1;
        _experts = (int)(source.TryGetInteger($"{_arch}.expert_count") ?? 0);

        var ordered = source.Tensors.OrderBy(t => t.Name, ProcessingOrder.Instance).ToList();
        foreach (var t in ordered)
        {
            if (t.Name.Contains("attn_v.weight") || t.Name.Contains("attn_qkv.weight") || t.Name.Contains("attn_kv_b.weight"))
                _attentionV++;
            else if (t.Name == "output.weight")
                _hasOutput = true;
        }
        _ffnDown = (int)(source.TryGetInteger($"{_arch}.block_count") ?? ordered.Count(t => t.Name.Contains("ffn_down")));

        var tensors = new List<TensorQuantization>(ordered.Count);
        foreach (var t in ordered)
            tensors.Add(Decide(t, options));
        Tensors = tensors;
    }

    /// <summary>In processing (and output file) order.</summary>
    public IReadOnlyList<TensorQuantization> Tensors { get; }

    /// <summary>
    /// Plans <paramref name="source"/>. InvalidDataException when a tensor that would be quantized is not F32,
    /// F16 or BF16 (re-quantizing quantized weights compounds the error; start from the original model).
    /// </summary>
    public static QuantizationPlan Create(GgufFile source, QuantizationOptions options)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(options);
        return new QuantizationPlan(source, options);
    }

    /// <summary>Row-length fallback, after llama.cpp's table; IQ4_NL (its choice for Q2_K/Q3_K) is replaced by Q4_0, which has the same size and block.</summary>
    public static GgmlType Fallback(GgmlType type) => type switch
    {
        GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0,
        GgmlType.Q4_K => GgmlType.Q5_0,
        GgmlType.Q5_K => GgmlType.Q5_1,
        GgmlType.Q6_K => GgmlType.Q8_0,
        _ => GgmlType.F16,
    };

    private TensorQuantization Decide(GgufTensorInfo t, QuantizationOptions options)
    {
        if (!IsQuantized(t, options))
            return new TensorQuantization(t.Name, t.Dimensions, t.Type, t.Type, null);
        if (t.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
            throw new InvalidDataException(
                $"tensor '{t.Name}' is {GgmlTypeTraits.Name(t.Type)}; quantize reads F32, F16 or BF16 weights (start from the unquantized model)");

        GgmlType type = options.Pure ? _mix.DefaultType : MixType(t);
        GgmlType? fallbackFrom = null;
        if (t.RowLength % GgmlTypeTraits.BlockSize(type) != 0)
        {
            fallbackFrom = type;
            type = Fallback(type);
            if (t.RowLength % GgmlTypeTraits.BlockSize(type) != 0)
                type = GgmlType.F16;
        }
        return new TensorQuantization(t.Name, t.Dimensions, t.Type, type, fallbackFrom);
    }

    /// <summary>llama_model_quantize's test for whether a tensor is quantized at all.</summary>
    private static bool IsQuantized(GgufTensorInfo t, QuantizationOptions options)
    {
        string name = t.Name;
        if (!name.EndsWith("weight", StringComparison.Ordinal) || Dimensions(t) < 2)
            return false;
        if (name.Contains("_norm.weight") || name.Contains("ffn_gate_inp.weight") || name.Contains("attn_rel_b.weight"))
            return false;
        if (options.LeaveOutput && name == "output.weight")
            return false;
        if (name is "position_embd.weight" or "token_types.weight")
            return false;
        // Mamba's and RWKV's small 2-D weights stay as they are
        string[] small = ["ssm_conv1d.weight", "ssm_x.weight", "ssm_dt.weight", "time_mix_first.weight", "time_mix_w1.weight",
            "time_mix_w2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight"];
        return !small.Any(name.Contains);
    }

    /// <summary>ggml_n_dims: trailing dimensions of 1 do not count.</summary>
    private static int Dimensions(GgufTensorInfo t)
    {
        for (int d = t.Dimensions.Length - 1; d >= 1; d--)
        {
            if (t.Dimensions[d] > 1)
                return d + 1;
        }
        return 1;
    }

    /// <summary>llama_tensor_get_type for the mixes Kiln offers (no IQ types, no imatrix).</summary>
    private GgmlType MixType(GgufTensorInfo t)
    {
        string name = t.Name, mix = _mix.Name;
        GgmlType type = _mix.DefaultType;
        bool falcon = _arch == "falcon";

        if (name == "output.weight" || (!_hasOutput && name == "token_embd.weight"))
        {
            if (falcon || t.RowLength % GgmlTypeTraits.BlockSize(type) != 0)
                return GgmlType.Q8_0;
            return type != GgmlType.Q8_0 ? GgmlType.Q6_K : type;
        }
        if (name.Contains("attn_v.weight"))
        {
            if (mix == "Q2_K")
                type = _gqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (mix == "Q3_K_M")
                type = _iAttentionV < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
            else if (mix == "Q3_K_L")
                type = GgmlType.Q5_K;
            else if (mix is "Q4_K_M" or "Q5_K_M" && UseMoreBits(_iAttentionV, _attentionV))
                type = GgmlType.Q6_K;
            else if (mix == "Q4_K_S" && _iAttentionV < 4)
                type = GgmlType.Q5_K;
            if (_experts == 8)
                type = GgmlType.Q8_0;
            _iAttentionV++;
        }
        else if (name.Contains("attn_k.weight"))
        {
            if (_experts == 8)
                type = GgmlType.Q8_0;
        }
        else if (name.Contains("ffn_down"))
        {
            int layer = _experts > 1 ? LayerOf(name) : _iFfnDown, layers = _ffnDown;
            if (mix == "Q2_K")
                type = GgmlType.Q3_K;
            else if (mix == "Q3_K_M")
                type = layer < layers / 16 ? GgmlType.Q5_K : !falcon || UseMoreBits(layer, layers) ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (mix == "Q3_K_L")
                type = falcon ? GgmlType.Q4_K : GgmlType.Q5_K;
            else if (mix == "Q4_K_M")
            {
                if (falcon)
                    type = layer < layers / 16 ? GgmlType.Q6_K : UseMoreBits(layer, layers) ? GgmlType.Q5_K : GgmlType.Q4_K;
                else if (UseMoreBits(layer, layers))
                    type = GgmlType.Q6_K;
            }
            else if (mix == "Q5_K_M" && UseMoreBits(layer, layers))
                type = GgmlType.Q6_K;
            else if (mix == "Q4_K_S" && !falcon && layer < layers / 8)
                type = GgmlType.Q5_K;
            _iFfnDown++;
        }
        else if (name.Contains("attn_output.weight"))
        {
            if (!falcon)
            {
                if (_experts == 8)
                {
                    if (mix is "Q2_K" or "Q3_K_S" or "Q3_K_M" or "Q4_K_S" or "Q4_K_M")
                        type = GgmlType.Q5_K;
                }
                else if (mix == "Q2_K")
                    type = GgmlType.Q3_K;
                else if (mix == "Q3_K_M")
                    type = GgmlType.Q4_K;
                else if (mix == "Q3_K_L")
                    type = GgmlType.Q5_K;
            }
            else if (mix == "Q3_K_L")
                type = GgmlType.Q4_K;
        }
        else if (name.Contains("attn_qkv.weight"))
        {
            if (mix is "Q3_K_M" or "Q3_K_L")
                type = GgmlType.Q4_K;
            else if (mix == "Q4_K_M")
                type = GgmlType.Q5_K;
            else if (mix == "Q5_K_M")
                type = GgmlType.Q6_K;
        }
        return type;
    }

    /// <summary>llama.cpp's use_more_bits: the first and last eighth of the layers, and every third one between.</summary>
    public static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    private static int LayerOf(string name)
    {
        if (name.StartsWith("blk.", StringComparison.Ordinal))
        {
            int end = name.IndexOf('.', 4);
            if (end > 4 && int.TryParse(name.AsSpan(4, end - 4), out int layer))
                return layer;
        }
        throw new InvalidDataException($"cannot tell the layer of tensor '{name}'");
    }

    /// <summary>llama_model_loader's weight_name_comparer: by "blk.N." layer (-1 for none), then by name bytes.</summary>
    private sealed class ProcessingOrder : IComparer<string>
    {
        public static readonly ProcessingOrder Instance = new();

        public int Compare(string? a, string? b)
        {
            int la = Layer(a!), lb = Layer(b!);
            return la != lb ? la.CompareTo(lb) : string.CompareOrdinal(a, b);
        }

        private static int Layer(string name)
        {
            if (!name.StartsWith("blk.", StringComparison.Ordinal))
                return -1;
            int i = 4, layer = 0;
            bool digits = false;
            while (i < name.Length && char.IsAsciiDigit(name[i]))
            {
                layer = layer * 10 + (name[i] - '0');
                digits = true;
                i++;
            }
            return digits ? layer : -1;
        }
    }
}
