using Kiln.Tensors;

namespace Kiln.Cli.Tests;

/// <summary>--mmap / --no-mmap on the commands that load a model.</summary>
public sealed class LoadModeFlagTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-loadmode-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RandomModel() => new RandomLlama { WeightType = GgmlType.Q4_0, Dim = 64, Heads = 2, KvHeads = 1 }.Write(Path.Combine(_dir, "random.gguf"));

    [Theory]
    [InlineData("run", "-p", "Once")]
    [InlineData("chat")]
    [InlineData("bench", "-p", "4", "-n", "2", "-r", "1")]
    [InlineData("perplexity", "-f", "text.txt")]
    [InlineData("serve", "--port", "0")]
    public void BothFlagsAreOneUsageError(params string[] rest)
    {
        File.WriteAllText(Path.Combine(_dir, "text.txt"), "Once upon a time there was a cat.");
        string[] args = [rest[0], "-m", RandomModel(), .. rest[1..].Select(a => a == "text.txt" ? Path.Combine(_dir, a) : a), "--mmap", "--no-mmap"];
        var r = KilnRunner.Run(args);
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("kiln: error: give --mmap or --no-mmap, not both", r.Stderr.Trim());
    }

    [Fact]
    public void RunGivesTheSameTextMappedCopiedAndByDefault()
    {
        string model = RandomModel();
        string[] Args(params string[] extra) => ["run", "-m", model, "-p", "Once upon", "-n", "12", "--temp", "0", "-t", "2", .. extra];
        var byDefault = KilnRunner.Run(Args());
        var mapped = KilnRunner.Run(Args("--mmap"));
        var copied = KilnRunner.Run(Args("--no-mmap"));
        Assert.Equal(0, byDefault.ExitCode);
        Assert.Equal(0, mapped.ExitCode);
        Assert.Equal(0, copied.ExitCode);
        Assert.NotEqual("", byDefault.Stdout);
        Assert.Equal(byDefault.Stdout, mapped.Stdout);
        Assert.Equal(byDefault.Stdout, copied.Stdout);
    }

    [Theory]
    [InlineData("--no-mmap", "weights copied into memory")]
    [InlineData("--mmap", "weights memory-mapped")]
    [InlineData(null, "weights memory-mapped")]
    public void BenchSaysHowTheWeightsWereLoaded(string? flag, string expected)
    {
        string[] args = ["bench", "-m", RandomModel(), "-p", "4", "-n", "2", "-r", "1", "-t", "1"];
        var r = KilnRunner.Run(flag is null ? args : [.. args, flag]);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains(expected, r.Stderr);
    }
}
