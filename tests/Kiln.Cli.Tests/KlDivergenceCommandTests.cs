using System.Globalization;
using System.Text.RegularExpressions;
using Kiln.Evaluation;
using Kiln.Tests.TestSupport;

namespace Kiln.Cli.Tests;

/// <summary>kiln perplexity --kl-divergence-base FILE, then --kl-divergence against it.</summary>
public sealed class KlDivergenceCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-kld-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RandomModel(int seed = 1234) => new RandomLlama { Seed = seed }.Write(Path.Combine(_dir, $"random{seed}.gguf"));

    private string Story()
    {
        string path = Path.Combine(_dir, "story.txt");
        File.WriteAllText(path, string.Concat(Enumerable.Repeat("Once upon a time the cat sat. ", 12)));
        return path;
    }

    private static double Stat(string stdout, string label) => double.Parse(
        Regex.Match(stdout, Regex.Escape(label) + @"\s*:\s*(-?[0-9.]+)").Groups[1].Value, CultureInfo.InvariantCulture);

    [Fact]
    public void BaseRunSavesTheFileAndComparisonPrintsTheStatistics()
    {
        string model = RandomModel(), text = Story(), file = Path.Combine(_dir, "base.bin");
        var plain = KilnRunner.Run("perplexity", "-m", model, "-f", text, "-c", "32", "-t", "1");
        var saved = KilnRunner.Run("perplexity", "-m", model, "-f", text, "-c", "32", "-t", "1", "--kl-divergence-base", file);
        Assert.Equal(0, saved.ExitCode);
        Assert.Equal(plain.Stdout, saved.Stdout);
        Assert.Contains($"saved the log-probabilities of", saved.Stderr);
        Assert.True(File.Exists(file));

        var self = KilnRunner.Run("perplexity", "-m", model, "--kl-divergence-base", file, "--kl-divergence", "-t", "1");
        Assert.Equal(0, self.ExitCode);
        string finalPpl = Regex.Match(plain.Stdout, @"PPL = ([0-9.]+)").Groups[1].Value;
        Assert.Equal(double.Parse(finalPpl, CultureInfo.InvariantCulture), Stat(self.Stdout, "Mean PPL(Q)"), 3e-4);
        Assert.True(Stat(self.Stdout, "Mean    KLD") < 1e-5);
        Assert.Contains("====== KL divergence statistics ======", self.Stdout);
        Assert.Equal(Stat(self.Stdout, "Mean PPL(Q)") / Stat(self.Stdout, "Mean PPL(base)"), Stat(self.Stdout, "Mean PPL(Q)/PPL(base)"), 2e-6);

        var other = KilnRunner.Run("perplexity", "-m", RandomModel(7), "--kl-divergence-base", file, "--kl-divergence", "-t", "1");
        Assert.Equal(0, other.ExitCode);
        Assert.True(Stat(other.Stdout, "Mean    KLD") > 0.01, other.Stdout);
        Assert.Equal(Stat(self.Stdout, "Mean PPL(base)"), Stat(other.Stdout, "Mean PPL(base)"));
    }

    /// <summary>The quantized tiny256 against its F32 base: Mean PPL(Q) is the file's own perplexity over the same chunks.</summary>
    [SharedFact]
    public void QuantizedModelAgainstItsF32Base()
    {
        string file = Path.Combine(_dir, "base.bin"), text = PerplexityReference.TextPath;
        string f32 = SharedData.Path("refs", "quant", "tiny256-f32.gguf"), q4 = SharedData.Path("refs", "quant", "tiny256-Q4_K_M.gguf");
        Assert.Equal(0, KilnRunner.Run("perplexity", "-m", f32, "-f", text, "-c", "128", "-t", "2", "--chunks", "8", "--kl-divergence-base", file).ExitCode);
        var plain = KilnRunner.Run("perplexity", "-m", q4, "-f", text, "-c", "128", "-t", "2", "--chunks", "8");
        var kld = KilnRunner.Run("perplexity", "-m", q4, "--kl-divergence-base", file, "--kl-divergence", "-t", "2");
        Assert.Equal(0, kld.ExitCode);
        Assert.Equal(plain.Stdout.Split('\n')[0], kld.Stdout.Split('\n')[0]); // the same running perplexities
        Assert.InRange(Stat(kld.Stdout, "Mean    KLD"), 1e-3, 0.5);
        Assert.InRange(Stat(kld.Stdout, "Same top p"), 10, 99.9);
    }

    private static void AssertError(KilnRunner.Result r, string message)
    {
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("kiln: error: ", r.Stderr);
        Assert.Contains(message, r.Stderr);
    }

    [Fact]
    public void BadUseIsReported()
    {
        string model = RandomModel();
        AssertError(KilnRunner.Run("perplexity", "-m", model, "--kl-divergence"), "--kl-divergence needs --kl-divergence-base");
        AssertError(KilnRunner.Run("perplexity", "-m", model), "Option '--file' is required");
        AssertError(KilnRunner.Run("perplexity", "-m", model, "--kl-divergence-base", Path.Combine(_dir, "none.bin"), "--kl-divergence"), "not found");

        string other = Path.Combine(_dir, "vocab100.bin");
        using (var writer = new KlDivergenceBaseWriter(other, 32, 100, new int[32]))
        {
            writer.OnChunk(0, new float[15 * 100], new int[15], 100);
            writer.Commit();
        }
        AssertError(KilnRunner.Run("perplexity", "-m", model, "--kl-divergence-base", other, "--kl-divergence"), "100-token vocabulary");
        AssertError(KilnRunner.Run("perplexity", "-m", model, "--kl-divergence-base", other, "--kl-divergence", "-c", "64"), "differs from the base file's 32");

        string junk = Path.Combine(_dir, "junk.bin");
        File.WriteAllText(junk, "this is not a base file");
        AssertError(KilnRunner.Run("perplexity", "-m", model, "--kl-divergence-base", junk, "--kl-divergence"), "not a KL-divergence base file");
    }
}
