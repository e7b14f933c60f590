using System.Security.Cryptography;
using System.Text.Json;
using Kiln.Tests.TestSupport;

namespace Kiln.Cli.Tests;

public sealed class QuantizeCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-quantize-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RandomModel() => new RandomLlama().Write(Path.Combine(_dir, "random.gguf"));

    private string[] Files() => Directory.GetFiles(_dir).Select(Path.GetFileName).Order().ToArray()!;

    private static string FileSha(string path) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>
    /// kiln quantize of tiny256 writes llama-quantize's exact file, so kiln perplexity and kiln run print for it
    /// exactly what they print for llama.cpp's file.
    /// </summary>
    [SharedTheory]
    [InlineData("tiny256-Q4_0-pure.gguf", "Q4_0", true)]
    [InlineData("tiny256-Q8_0.gguf", "Q8_0", false)]
    [InlineData("tiny256-Q4_K_M.gguf", "Q4_K_M", false)]
    public void QuantizedTiny256RunsAsLlamaCppsFileDoes(string reference, string type, bool pure)
    {
        string llamaFile = SharedData.Path("refs", "quant", reference);
        string ours = Path.Combine(_dir, "ours.gguf");
        string[] args = ["quantize", SharedData.Path("refs", "quant", "tiny256-f32.gguf"), ours, "--type", type, "-t", "2"];
        var q = KilnRunner.Run(pure ? [.. args, "--pure"] : args);
        Assert.Equal(0, q.ExitCode);
        Assert.Equal(FileSha(llamaFile), FileSha(ours));
        Assert.Contains("blk.1.ffn_down.weight", q.Stderr);
        Assert.Matches(@"model size  = 7\.0\d MiB \(32\.00 bpw\)", q.Stdout);
        Assert.Matches(@"quant size  = \d+\.\d\d MiB \(\d\.\d\d bpw\)", q.Stdout);

        string text = PerplexityReference.TextPath;
        var mine = KilnRunner.Run("perplexity", "-m", ours, "-f", text, "-c", "128", "-t", "2", "--chunks", "6");
        var theirs = KilnRunner.Run("perplexity", "-m", llamaFile, "-f", text, "-c", "128", "-t", "2", "--chunks", "6");
        Assert.Equal(0, mine.ExitCode);
        Assert.Equal(theirs.Stdout, mine.Stdout);

        var run = KilnRunner.Run("run", "-m", ours, "-p", "Once upon a time", "-n", "8", "--temp", "0", "-t", "2");
        var runTheirs = KilnRunner.Run("run", "-m", llamaFile, "-p", "Once upon a time", "-n", "8", "--temp", "0", "-t", "2");
        Assert.Equal(0, run.ExitCode);
        Assert.Equal(runTheirs.Stdout, run.Stdout);
    }

    /// <summary>The random test model's 64-wide rows fit no K block: Q4_K_M falls back (Q4_K → Q5_0, output → Q8_0) and says so.</summary>
    [Fact]
    public void FallbackTensorsAreListedAndTheModelRuns()
    {
        string input = RandomModel(), output = Path.Combine(_dir, "q.gguf");
        var r = KilnRunner.Run("quantize", input, output, "--type", "Q4_K_M", "--threads", "2");
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(@"\[\s*1/\s*\d+\]\s+output\.weight - \[\s*64,\s*267\], type =    f32, converting to q8_0", r.Stderr);
        Assert.Contains("output_norm.weight", r.Stderr);
        Assert.Matches(@"kiln: warning: \d+ of \d+ tensors have rows that are not a multiple", r.Stderr);
        Assert.Contains("kiln: warning:   blk.0.attn_q.weight [64, 64]: q4_k -> q5_0", r.Stderr);
        Assert.Contains($"wrote {output} (Q4_K_M", r.Stdout);

        var run = KilnRunner.Run("run", "-m", output, "-p", "Once upon", "-n", "4", "--temp", "0", "-t", "1");
        Assert.Equal(0, run.ExitCode);
        Assert.StartsWith("Once upon", run.Stdout);
    }

    private void AssertRefused(KilnRunner.Result r, string message)
    {
        Assert.NotEqual(0, r.ExitCode);
        string[] errors = r.Stderr.Split('\n').Where(l => l.StartsWith("kiln: error:")).ToArray();
        Assert.Single(errors);
        Assert.Contains(message, errors[0]);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void AlreadyQuantizedInputIsRefused()
    {
        string input = RandomModel(), q8 = Path.Combine(_dir, "q8.gguf");
        Assert.Equal(0, KilnRunner.Run("quantize", input, q8, "--type", "Q8_0").ExitCode);
        var before = Files();
        AssertRefused(KilnRunner.Run("quantize", q8, Path.Combine(_dir, "q4.gguf"), "--type", "Q4_0"), "is q8_0; quantize reads F32, F16 or BF16");
        Assert.Equal(before, Files());
    }

    [Fact]
    public void NonGgufAndTruncatedInputsAreRefused()
    {
        string text = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(text, "not a model at all");
        AssertRefused(KilnRunner.Run("quantize", text, Path.Combine(_dir, "a.gguf"), "--type", "Q8_0"), "expected 'GGUF'");

        byte[] model = File.ReadAllBytes(RandomModel());
        string truncated = Path.Combine(_dir, "truncated.gguf");
        File.WriteAllBytes(truncated, model[..(model.Length / 2)]);
        AssertRefused(KilnRunner.Run("quantize", truncated, Path.Combine(_dir, "b.gguf"), "--type", "Q8_0"), "truncated");
        Assert.Equal(["notes.txt", "random.gguf", "truncated.gguf"], Files());
    }

    [Fact]
    public void MissingInputIsRefused()
    {
        AssertRefused(KilnRunner.Run("quantize", Path.Combine(_dir, "none.gguf"), Path.Combine(_dir, "a.gguf"), "--type", "Q8_0"), "not found");
        Assert.Empty(Files());
    }

    [Fact]
    public void UnknownTypeIsAUsageError()
    {
        string input = RandomModel();
        var r = KilnRunner.Run("quantize", input, Path.Combine(_dir, "a.gguf"), "--type", "Q7_K");
        AssertRefused(r, "unknown quantization type 'Q7_K'");
        Assert.Equal(2, r.ExitCode);
        Assert.Equal(["random.gguf"], Files());
    }

    [Fact]
    public void ExistingOutputNeedsForce()
    {
        string input = RandomModel(), output = Path.Combine(_dir, "out.gguf");
        File.WriteAllText(output, "precious");
        AssertRefused(KilnRunner.Run("quantize", input, output, "--type", "Q8_0"), "exists; pass --force");
        Assert.Equal("precious", File.ReadAllText(output));
        Assert.Equal(["out.gguf", "random.gguf"], Files());

        Assert.Equal(0, KilnRunner.Run("quantize", input, output, "--type", "Q8_0", "--force").ExitCode);
        Assert.Equal("GGUF", System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(output), 0, 4));
        Assert.Equal(["out.gguf", "random.gguf"], Files());
    }

    [Fact]
    public void InputAsOutputIsRefusedEvenWithForce()
    {
        string input = RandomModel();
        string sha = FileSha(input);
        AssertRefused(KilnRunner.Run("quantize", input, input, "--type", "Q8_0", "--force"), "same file");
        Assert.Equal(sha, FileSha(input));
        Assert.Equal(["random.gguf"], Files());
    }
}
