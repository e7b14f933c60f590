using System.Globalization;
using System.Text.RegularExpressions;
using Kiln.Tests.TestSupport;

namespace Kiln.Cli.Tests;

public sealed class PerplexityCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-ppl-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RandomModel() => new RandomLlama().Write(Path.Combine(_dir, "random.gguf"));

    private string TextFile(string text, string name = "text.txt")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>About 400 tokens for the random model (mostly byte tokens: its vocabulary has no merges).</summary>
    private static string Story => string.Concat(Enumerable.Repeat("Once upon a time the cat sat. ", 12));

    /// <summary>The first 20 chunks of llama.cpp's stories260K run: the same "[i]x," values and the final line for them.</summary>
    [SharedFact]
    public void PrintsLlamaPerplexitysRunningValuesAndFinalLine()
    {
        var reference = PerplexityReference.Stories();
        var r = KilnRunner.Run("perplexity", "-m", reference.ModelPath, "-f", PerplexityReference.TextPath, "-c", "128", "-t", "2", "--chunks", "20");
        Assert.Equal(0, r.ExitCode);
        string[] lines = r.Stdout.Replace("\r\n", "\n").TrimEnd('\n').Split('\n');
        Assert.Equal(2, lines.Length);

        var printed = Regex.Matches(lines[0], @"\[(\d+)\]([0-9.]+),");
        Assert.Equal(lines[0], string.Concat(printed.Select(m => m.Value)));
        Assert.Equal(Enumerable.Range(1, 20).Select(i => i.ToString(CultureInfo.InvariantCulture)), printed.Select(m => m.Groups[1].Value));
        for (int i = 1; i <= 20; i++)
        {
            double ours = double.Parse(printed[i - 1].Groups[2].Value, CultureInfo.InvariantCulture);
            // %.4f of values that agree to ~1e-5: at most one unit in the last printed place.
            Assert.True(Math.Abs(ours - reference.RunningValue(i)) <= 1.5e-4, $"chunk {i}: kiln {ours}, llama.cpp {reference.PrintedChunks[i - 1]}");
        }

        var final = Regex.Match(lines[1], @"^Final estimate: PPL = ([0-9]+\.[0-9]{4}) \+/- ([0-9]+\.[0-9]{5})$");
        Assert.True(final.Success, lines[1]);
        Assert.Equal(printed[19].Groups[2].Value, final.Groups[1].Value);
        Assert.Contains("calculating perplexity over 20 chunks, n_ctx=128", r.Stderr);
        Assert.Contains($"{reference.TokenCount} tokens", r.Stderr);
    }

    [Fact]
    public void RunsOnASelfMadeModel()
    {
        var r = KilnRunner.Run("perplexity", "-m", RandomModel(), "-f", TextFile(Story), "-c", "32", "-t", "1");
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(@"^(\[\d+\][0-9]+\.[0-9]{4},)+\r?\nFinal estimate: PPL = [0-9]+\.[0-9]{4} \+/- [0-9]+\.[0-9]{5}\r?\n$", r.Stdout);
        Assert.Matches(@"calculating perplexity over \d+ chunks, n_ctx=32, 1 threads", r.Stderr);
    }

    /// <summary>-fa evaluates with flash attention: the same chunks, a perplexity equal up to float rounding.</summary>
    [Fact]
    public void FlashAttentionGivesThePerplexityOfTheDefault()
    {
        string model = RandomModel(), text = TextFile(Story);
        double Final(params string[] extra)
        {
            var r = KilnRunner.Run(["perplexity", "-m", model, "-f", text, "-c", "32", "-t", "1", .. extra]);
            Assert.Equal(0, r.ExitCode);
            var m = System.Text.RegularExpressions.Regex.Match(r.Stdout, @"Final estimate: PPL = ([0-9.]+)");
            Assert.True(m.Success, r.Stdout);
            return double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        }
        double exact = Final(), flash = Final("-fa");
        Assert.True(Math.Abs(flash - exact) <= 1e-3 * exact, $"flash {flash}, default {exact}");
    }

    [Fact]
    public void DefaultContextIsCappedAtTheModelsContext()
    {
        // 512 would exceed the random model's 64 positions.
        var r = KilnRunner.Run("perplexity", "-m", RandomModel(), "-f", TextFile(Story));
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("n_ctx=64", r.Stderr);
    }

    [Fact]
    public void MissingTextFileIsOneLineAndExitOne()
    {
        string missing = Path.Combine(_dir, "nope.txt");
        var r = KilnRunner.Run("perplexity", "-m", RandomModel(), "-f", missing);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"kiln: error: text file not found: {missing}", r.Stderr.TrimEnd());
    }

    [Fact]
    public void MissingModelIsOneLineAndExitOne()
    {
        string missing = Path.Combine(_dir, "nope.gguf");
        var r = KilnRunner.Run("perplexity", "-m", missing, "-f", TextFile(Story));
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"kiln: error: model file not found: {missing}", r.Stderr.TrimEnd());
    }

    [Fact]
    public void TextThatIsNotUtf8IsOneLineAndExitOne()
    {
        string path = Path.Combine(_dir, "binary.txt");
        File.WriteAllBytes(path, [(byte)'a', (byte)'b', 0xC3, 0x28, (byte)'c']);
        var r = KilnRunner.Run("perplexity", "-m", RandomModel(), "-f", path);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal($"kiln: error: {path} is not UTF-8 text (invalid bytes at offset 2)", r.Stderr.TrimEnd());
    }

    [Fact]
    public void TextShorterThanOneChunkIsAUsageError()
    {
        string path = TextFile("Once upon a time");
        var r = KilnRunner.Run("perplexity", "-m", RandomModel(), "-f", path, "-c", "32");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal($"kiln: error: {path} is 23 tokens long, but a context of 32 needs at least 32 tokens (one chunk); give a longer text or a smaller --ctx-size",
            r.Stderr.TrimEnd());
        Assert.Empty(r.Stdout);
    }

    [Theory]
    [InlineData("31", "perplexity context 31 must be even (the second half of each chunk is scored)")]
    [InlineData("2", "perplexity context 2 is too small: it must be at least 4 tokens")]
    [InlineData("128", "perplexity context 128 is larger than the model's context length 64")]
    [InlineData("-4", "--ctx-size -4 must not be negative")]
    public void BadContextSizesAreUsageErrors(string ctx, string message)
    {
        var r = KilnRunner.Run("perplexity", "-m", RandomModel(), "-f", TextFile(Story), "-c", ctx);
        Assert.Equal(2, r.ExitCode);
        Assert.Equal($"kiln: error: {message}", r.Stderr.TrimEnd());
    }

    [Theory]
    [InlineData("--chunks", "0")]
    [InlineData("--chunks", "-2")]
    [InlineData("--threads", "-1")]
    [InlineData("-c", "many")]
    public void BadFlagValuesAreUsageErrors(string flag, string value)
    {
        var r = KilnRunner.Run("perplexity", "-m", RandomModel(), "-f", TextFile(Story), flag, value);
        Assert.Equal(2, r.ExitCode);
        Assert.StartsWith("kiln: error: ", r.Stderr);
        Assert.Contains(flag == "-c" ? "many" : flag, r.Stderr);
    }

    [Fact]
    public void FileIsRequired()
    {
        var r = KilnRunner.Run("perplexity", "-m", "x.gguf");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--file", r.Stderr);
        Assert.Contains("kiln perplexity --help", r.Stderr);
    }

    [Fact]
    public void HelpDescribesTheCommand()
    {
        var r = KilnRunner.Run("perplexity", "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("Usage:", r.Stdout);
        Assert.Contains("--chunks", r.Stdout);
    }
}
