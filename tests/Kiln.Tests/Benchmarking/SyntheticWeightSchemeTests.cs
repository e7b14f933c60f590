using Kiln.Benchmarking;
using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Tests.Benchmarking;

public class SyntheticWeightSchemeTests
{
    private static SyntheticModelShape Shape(int layers, int dim = 256, int ffn = 768, bool tied = false) => new()
    {
        Name = "test",
        EmbeddingLength = dim,
        BlockCount = layers,
        HeadCount = 8,
        HeadCountKv = 4,
        FeedForwardLength = ffn,
        VocabSize = 512,
        ContextLength = 256,
        TiedEmbeddings = tied,
    };

    [Fact]
    public void AvailableTypesAreThoseTheKernelsSupport()
    {
        var names = SyntheticWeightScheme.AvailableNames;
        foreach (var type in Enum.GetValues<GgmlType>())
        {
            bool offered = names.Contains(GgmlTypeTraits.Name(type));
            Assert.Equal(RowKernels.Supports(type) && RandomWeightGenerator.CanGenerate(type), offered);
        }
        Assert.Equal(RowKernels.Supports(GgmlType.Q4_K) && RowKernels.Supports(GgmlType.Q6_K), names.Contains("q4_k_m"));
        Assert.Contains("f16", names);
        Assert.Contains("q4_0", names);
    }

    [Fact]
    public void ParseRejectsUnknownAndUnsupportedTypes()
    {
        Assert.Equal("q8_0", SyntheticWeightScheme.Parse("Q8_0").Name);
        Assert.Throws<ArgumentException>(() => SyntheticWeightScheme.Parse("q9_9"));
        Assert.Throws<NotSupportedException>(() => SyntheticWeightScheme.Parse("iq2_xxs"));
        if (!RowKernels.Supports(GgmlType.Q4_K) || !RowKernels.Supports(GgmlType.Q6_K))
            Assert.Throws<NotSupportedException>(() => SyntheticWeightScheme.Parse("q4_k_m"));
        else
            Assert.Same(SyntheticWeightScheme.Q4KM, SyntheticWeightScheme.Parse("q4_k_m"));
    }

    /// <summary>
    /// llama.cpp's Q4_K_M rule, written out: attn_v and ffn_down of layer i get Q6_K when
    /// i &lt; n/8, i ≥ 7n/8, or (i - n/8) mod 3 = 2; the classifier gets Q6_K; the rest Q4_K.
    /// </summary>
    [Fact]
    public void Q4KMFollowsLlamaCppsLayerRule()
    {
        var shape = Shape(layers: 22);
        var scheme = SyntheticWeightScheme.Q4KM;
        int[] moreBits = [0, 1, 4, 7, 10, 13, 16, 19, 20, 21];
        for (int l = 0; l < 22; l++)
        {
            var expected = moreBits.Contains(l) ? GgmlType.Q6_K : GgmlType.Q4_K;
            Assert.Equal(expected, scheme.TypeOf(shape, $"blk.{l}.attn_v.weight", l, 256));
            Assert.Equal(expected, scheme.TypeOf(shape, $"blk.{l}.ffn_down.weight", l, 768));
            Assert.Equal(GgmlType.Q4_K, scheme.TypeOf(shape, $"blk.{l}.attn_k.weight", l, 256));
            Assert.Equal(GgmlType.Q4_K, scheme.TypeOf(shape, $"blk.{l}.ffn_up.weight", l, 256));
        }
        Assert.Equal(GgmlType.Q6_K, scheme.TypeOf(shape, "output.weight", -1, 256));
        Assert.Equal(GgmlType.Q4_K, scheme.TypeOf(shape, "token_embd.weight", -1, 256));
        Assert.Equal(GgmlType.Q6_K, scheme.TypeOf(Shape(22, tied: true), "token_embd.weight", -1, 256));
    }

    [Fact]
    public void RowsNotMadeOfSuperBlocksFallBackAsLlamaQuantizeDoes()
    {
        // qwen2-0.5b: 896 columns are 28 blocks of 32 but not whole 256-element super-blocks.
        var shape = SyntheticModelShape.Find("qwen2-0.5b")!;
        var q4km = SyntheticWeightScheme.Q4KM;
        Assert.Equal(GgmlType.Q5_0, q4km.TypeOf(shape, "blk.5.attn_q.weight", 5, 896));
        Assert.Equal(GgmlType.Q8_0, q4km.TypeOf(shape, "token_embd.weight", -1, 896));
        Assert.Equal(GgmlType.Q8_0, q4km.TypeOf(shape, "blk.0.attn_v.weight", 0, 896));
        Assert.Equal(GgmlType.Q6_K, q4km.TypeOf(shape, "blk.0.ffn_down.weight", 0, 4864));
        Assert.Equal(GgmlType.F16, SyntheticWeightScheme.Uniform(GgmlType.Q8_0).TypeOf(shape, "x", 0, 48));
        Assert.Equal(GgmlType.Q4_0, SyntheticWeightScheme.Uniform(GgmlType.Q4_0).TypeOf(shape, "x", 0, 896));
    }

    [Fact]
    public void UnsupportedTypesAreListedPerShape()
    {
        Assert.Empty(SyntheticWeightScheme.Uniform(GgmlType.F16).UnsupportedTypesFor(Shape(2)));
        var q4km = SyntheticWeightScheme.Q4KM.UnsupportedTypesFor(Shape(2));
        Assert.Equal(RowKernels.Supports(GgmlType.Q4_K), !q4km.Contains(GgmlType.Q4_K));
        Assert.Equal(RowKernels.Supports(GgmlType.Q6_K), !q4km.Contains(GgmlType.Q6_K));
    }

    /// <summary>llama-quantize's own Q4_K_M file of a 2-layer model: every matrix has the type the scheme gives.</summary>
    [SharedFact]
    public void Q4KMMatchesLlamaQuantizesFile()
    {
        using var file = GgufFile.Open(SharedData.Path("refs", "quant", "tiny256-Q4_K_M.gguf"));
        var shape = Shape(layers: 2);
        int checkedCount = 0;
        foreach (var t in file.Tensors.Where(t => t.Dimensions.Length == 2))
        {
            int layer = t.Name.StartsWith("blk.", StringComparison.Ordinal) ? int.Parse(t.Name.Split('.')[1]) : -1;
            Assert.Equal(t.Type, SyntheticWeightScheme.Q4KM.TypeOf(shape, t.Name, layer, t.Dimensions[0]));
            checkedCount++;
        }
        Assert.Equal(16, checkedCount);
    }
}
