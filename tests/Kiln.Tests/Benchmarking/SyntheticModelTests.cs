using Kiln.Benchmarking;
using Kiln.Formats.Gguf;
using Kiln.Models.Llama;
using Kiln.Tensors;

namespace Kiln.Tests.Benchmarking;

public sealed class SyntheticModelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-synthetic-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static SyntheticModelShape Tiny(bool qwen = false) => new()
    {
        Name = qwen ? "tiny-qwen2" : "tiny",
        Architecture = qwen ? "qwen2" : "llama",
        EmbeddingLength = 128,
        BlockCount = 2,
        HeadCount = 4,
        HeadCountKv = 2,
        FeedForwardLength = 192,
        VocabSize = 300,
        ContextLength = 64,
        TiedEmbeddings = qwen,
        AttentionBiases = qwen,
        RopeFreqBase = qwen ? 1_000_000f : 10_000f,
    };

    public static TheoryData<string> SupportedTypes() => new(SyntheticWeightScheme.AvailableNames);

    [Theory]
    [MemberData(nameof(SupportedTypes))]
    public void BuildsALoadableModelThatEvaluatesToFiniteLogits(string type)
    {
        foreach (var shape in new[] { Tiny(), Tiny(qwen: true) })
        {
            var scheme = SyntheticWeightScheme.Parse(type);
            using var synthetic = SyntheticModel.Create(shape, scheme, seed: 11, directory: _dir);
            var model = synthetic.Model;
            var c = model.Config;
            Assert.Equal((shape.Architecture, 128, 2, 4, 2, 192, 300), (c.Architecture, c.EmbeddingLength, c.BlockCount, c.HeadCount, c.HeadCountKv, c.FeedForwardLength, c.VocabSize));
            Assert.Equal(shape.ParameterCount, model.File.Tensors.Sum(t => t.ElementCount));
            Assert.Equal(shape.TiedEmbeddings, model.File.FindTensor("output.weight") is null);
            Assert.Equal(shape.AttentionBiases, model.Layers[0].QueryBias is not null);
            foreach (var (name, layer, columns, _) in SyntheticWeightScheme.WeightMatrices(shape))
                Assert.Equal(scheme.TypeOf(shape, name, layer, columns), model.File.GetTensor(name).Type);

            using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 16, Threads = 2 });
            var logits = new float[c.VocabSize];
            context.Evaluate([1, 7, 299, 42], logits);
            context.Evaluate([3], logits);
            Assert.All(logits, v => Assert.True(float.IsFinite(v)));
            Assert.Contains(logits, v => v != 0);
        }
    }

    [Fact]
    public void TheTemporaryFileIsGoneOnceLoadedOrDisposed()
    {
        using (var synthetic = SyntheticModel.Create(Tiny(), SyntheticWeightScheme.Uniform(GgmlType.F16), directory: _dir))
        {
            Assert.True(synthetic.Model.Layers[1].Down.ByteSize > 0);
            if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
                Assert.Empty(Directory.GetFiles(_dir));
        }
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void SameSeedSameFile()
    {
        string Write(ulong seed, string name)
        {
            string path = Path.Combine(_dir, name);
            SyntheticModel.CreateWriter(Tiny(), SyntheticWeightScheme.Uniform(GgmlType.Q8_0), seed).Write(path);
            return path;
        }
        byte[] a = File.ReadAllBytes(Write(1, "a.gguf")), b = File.ReadAllBytes(Write(1, "b.gguf")), c = File.ReadAllBytes(Write(2, "c.gguf"));
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        using var file = GgufFile.Open(Path.Combine(_dir, "a.gguf"));
        Assert.Equal("tiny q8_0 (random weights)", file.GetString("general.name"));
        Assert.Equal(300, file.GetInteger("llama.vocab_size"));
    }

    [Fact]
    public void UnsupportedTypesFailBeforeWritingAnything()
    {
        var scheme = SyntheticWeightScheme.Uniform(GgmlType.IQ2_XXS);
        var e = Assert.Throws<NotSupportedException>(() => SyntheticModel.Create(Tiny() with { EmbeddingLength = 256, FeedForwardLength = 256, HeadCount = 4 }, scheme, directory: _dir));
        Assert.Contains("iq2_xxs", e.Message);
        Assert.Empty(Directory.GetFiles(_dir));
    }
}
