namespace Kiln.Training.Models;

/// <summary>
/// A contiguous run [Offset, Offset + Length) of the flat parameter buffer that the model uses as one piece: the
/// embedding, one block, or the head (final norm and, untied, the output matrix). Data parallel training reduces
/// gradients unit by unit as the backward pass finishes them, and ZeRO-3 gathers a unit's parameters just before it runs.
/// </summary>
public sealed record ParameterUnit(int Index, string Name, int Offset, int Length)
{
    public int End => Offset + Length;

    /// <summary>
    /// Units of a model whose tensors are declared embedding first, then blocks in order (names "prefix.{layer}.…", as
    /// GGUF's "blk.3." and GPT-2's "h.3."), then the head: [embedding, block 0, …, block layers−1, head].
    /// </summary>
    public static ParameterUnit[] Partition(IReadOnlyList<ParameterTensor> tensors, int layers)
    {
        var units = new ParameterUnit[layers + 2];
        int cursor = 0, i = 0;
        for (; i < tensors.Count && LayerOf(tensors[i]) < 0; i++)
            cursor = tensors[i].Offset + tensors[i].Length;
        units[0] = new ParameterUnit(0, "embedding", 0, cursor);
        for (int l = 0; l < layers; l++)
        {
            int start = cursor;
            while (i < tensors.Count && LayerOf(tensors[i]) == l)
            {
                if (tensors[i].Offset != cursor)
                    throw new InvalidOperationException($"tensor {tensors[i].Name} is not contiguous with the rest of block {l}");
                cursor += tensors[i++].Length;
            }
            if (cursor == start)
                throw new InvalidOperationException($"no parameters found for block {l} (tensors must be declared block by block, in order)");
            units[l + 1] = new ParameterUnit(l + 1, $"block {l}", start, cursor - start);
        }
        int headStart = cursor;
        for (; i < tensors.Count; i++)
        {
            if (LayerOf(tensors[i]) >= 0)
                throw new InvalidOperationException($"tensor {tensors[i].Name} belongs to a block but follows the last block's parameters");
            cursor = tensors[i].Offset + tensors[i].Length;
        }
        units[layers + 1] = new ParameterUnit(layers + 1, "head", headStart, cursor - headStart);
        return units;
    }

    /// <summary>The unit holding a tensor.</summary>
    public static ParameterUnit Of(ReadOnlySpan<ParameterUnit> units, ParameterTensor p)
    {
        foreach (var u in units)
            if (p.Offset >= u.Offset && p.Offset < u.End)
                return u;
        throw new ArgumentException($"tensor {p.Name} lies in no unit");
    }

    private static int LayerOf(ParameterTensor p)
    {
        var parts = p.Name.Split('.');
        return parts.Length >= 3 && int.TryParse(parts[1], System.Globalization.NumberStyles.None, null, out int l) ? l : -1;
    }
}
