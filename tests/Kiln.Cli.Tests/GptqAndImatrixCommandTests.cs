using Kiln.Quantization;
using Kiln.Tests.TestSupport;

namespace Kiln.Cli.Tests;

/// <summary>kiln imatrix, kiln quantize --imatrix and --method gptq on the random test model, and their refusals.</summary>
public sealed class GptqAndImatrixCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-gptq-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Model(string name = "random.gguf", RandomLlama? spec = null) =>
        (spec ?? new RandomLlama()).Write(Path.Combine(_dir, name));

    private string Calibration()
    {
        string path = Path.Combine(_dir, "calib.txt");
        File.WriteAllText(path, string.Concat(Enumerable.Repeat("Once upon a time the cat sat. The cat sat upon a time. ", 60)));
        return path;
    }

    private string[] Files() => Directory.GetFiles(_dir).Select(Path.GetFileName).Order().ToArray()!;

    private static void AssertRefused(KilnRunner.Result r, string message)
    {
        Assert.NotEqual(0, r.ExitCode);
        string[] errors = r.Stderr.Split('\n').Where(l => l.StartsWith("kiln: error:")).ToArray();
        Assert.Single(errors);
        Assert.Contains(message, errors[0]);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void ImatrixFileDrivesTheQuantizerAndTheModelRuns()
    {
        string model = Model(), calib = Calibration(), im = Path.Combine(_dir, "im.dat");
        var r = KilnRunner.Run("imatrix", "-m", model, "-f", calib, "-o", im, "-c", "32", "-t", "1");
        Assert.Equal(0, r.ExitCode);
        Assert.Matches(@"wrote .*im\.dat: 14 weights, \d+ chunks of 32 tokens", r.Stdout);
        var matrix = ImportanceMatrix.Read(im);
        Assert.Equal(64, matrix.Entries["blk.1.attn_q.weight"].Values.Length);
        Assert.Equal(96, matrix.Entries["blk.0.ffn_down.weight"].Values.Length);

        string plain = Path.Combine(_dir, "plain.gguf"), weighted = Path.Combine(_dir, "weighted.gguf");
        Assert.Equal(0, KilnRunner.Run("quantize", model, plain, "--type", "Q4_0", "-t", "1").ExitCode);
        Assert.Equal(0, KilnRunner.Run("quantize", model, weighted, "--type", "Q4_0", "-t", "1", "--imatrix", im).ExitCode);
        Assert.NotEqual(File.ReadAllBytes(plain), File.ReadAllBytes(weighted));

        var run = KilnRunner.Run("run", "-m", weighted, "-p", "Once upon", "-n", "4", "--temp", "0", "-t", "1");
        Assert.Equal(0, run.ExitCode);
        Assert.StartsWith("Once upon", run.Stdout);
    }

    [Theory]
    [InlineData("Q4_0", "")]
    [InlineData("Q4_0", "--act-order")]
    [InlineData("Q4_0", "--one-pass")]
    [InlineData("Q4_0", "--scales=max")]
    [InlineData("Q8_0", "")]
    public void GptqOutputIsAnOrdinaryGgufThatRuns(string type, string flag)
    {
        string model = Model(), calib = Calibration(), output = Path.Combine(_dir, "gptq.gguf");
        string[] args = ["quantize", model, output, "--type", type, "-t", "2", "--method", "gptq", "--calib", calib, "--samples", "4"];
        var q = KilnRunner.Run(flag == "" ? args : [.. args, flag]);
        Assert.Equal(0, q.ExitCode);
        if (flag == "--one-pass")
        {
            Assert.Contains("kiln: GPTQ calibration: 4 chunks of 64 tokens", q.Stderr);
        }
        else
        {
            Assert.Contains("kiln: GPTQ layer 1/2: 4 chunks of 64 tokens", q.Stderr);
            Assert.Contains("kiln: GPTQ layer 2/2: 4 chunks of 64 tokens", q.Stderr);
        }
        Assert.Contains($"wrote {output} ({type}", q.Stdout);

        string rtn = Path.Combine(_dir, "rtn.gguf");
        Assert.Equal(0, KilnRunner.Run("quantize", model, rtn, "--type", type, "-t", "2").ExitCode);
        Assert.Equal(new FileInfo(rtn).Length, new FileInfo(output).Length);
        Assert.NotEqual(File.ReadAllBytes(rtn), File.ReadAllBytes(output));

        var run = KilnRunner.Run("run", "-m", output, "-p", "Once upon", "-n", "4", "--temp", "0", "-t", "1");
        Assert.Equal(0, run.ExitCode);
        Assert.StartsWith("Once upon", run.Stdout);
        var ppl = KilnRunner.Run("perplexity", "-m", output, "-f", calib, "-c", "32", "-t", "1", "--chunks", "2");
        Assert.Equal(0, ppl.ExitCode);
        Assert.Contains("Final estimate: PPL = ", ppl.Stdout);
    }

    [Fact]
    public void MissingOrInvalidCalibrationFileIsRefused()
    {
        string model = Model(), output = Path.Combine(_dir, "out.gguf");
        AssertRefused(KilnRunner.Run("quantize", model, output, "--type", "Q4_0", "--method", "gptq", "--calib", Path.Combine(_dir, "none.txt")),
            "calibration file not found");
        string binary = Path.Combine(_dir, "binary.txt");
        File.WriteAllBytes(binary, [0x41, 0xff, 0xfe, 0x42]);
        AssertRefused(KilnRunner.Run("quantize", model, output, "--type", "Q4_0", "--method", "gptq", "--calib", binary), "is not UTF-8 text");
        string tiny = Path.Combine(_dir, "tiny.txt");
        File.WriteAllText(tiny, "cat");
        AssertRefused(KilnRunner.Run("quantize", model, output, "--type", "Q4_0", "--method", "gptq", "--calib", tiny), "calibration text is");
        AssertRefused(KilnRunner.Run("imatrix", "-m", model, "-f", Path.Combine(_dir, "none.txt"), "-o", Path.Combine(_dir, "im.dat")),
            "calibration file not found");
        AssertRefused(KilnRunner.Run("quantize", model, output, "--type", "Q4_0", "--method", "gptq"), "needs --calib FILE");
        Assert.Equal(["binary.txt", "random.gguf", "tiny.txt"], Files());
    }

    [Fact]
    public void ImatrixOfAnotherModelIsRefused()
    {
        string model = Model(), other = Model("other.gguf", new RandomLlama { Dim = 96, Heads = 4, KvHeads = 2, Ffn = 128 });
        string im = Path.Combine(_dir, "other.dat");
        Assert.Equal(0, KilnRunner.Run("imatrix", "-m", other, "-f", Calibration(), "-o", im, "-c", "32", "--chunks", "2").ExitCode);
        var before = Files();
        AssertRefused(KilnRunner.Run("quantize", model, Path.Combine(_dir, "out.gguf"), "--type", "Q4_0", "--imatrix", im),
            "made for another model");

        string garbage = Path.Combine(_dir, "garbage.dat");
        File.WriteAllText(garbage, "certainly not an imatrix");
        AssertRefused(KilnRunner.Run("quantize", model, Path.Combine(_dir, "out.gguf"), "--type", "Q4_0", "--imatrix", garbage),
            "is not an importance matrix");
        AssertRefused(KilnRunner.Run("quantize", model, Path.Combine(_dir, "out.gguf"), "--type", "Q4_0", "--imatrix", im,
            "--method", "gptq", "--calib", Calibration()), "made for another model");
        Assert.Equal([.. before.Append("garbage.dat").Order()], Files());
    }

    [Fact]
    public void GptqRefusesUnsupportedTypesAndQuantizedInput()
    {
        string model = Model(), calib = Calibration();
        AssertRefused(KilnRunner.Run("quantize", model, Path.Combine(_dir, "a.gguf"), "--type", "Q5_1", "--method", "gptq", "--calib", calib),
            "--method gptq writes Q4_0, Q5_0, Q8_0, Q4_K (Q4_K_M, Q4_K_S) and Q6_K, not Q5_1");
        string q8 = Path.Combine(_dir, "q8.gguf");
        Assert.Equal(0, KilnRunner.Run("quantize", model, q8, "--type", "Q8_0").ExitCode);
        AssertRefused(KilnRunner.Run("quantize", q8, Path.Combine(_dir, "b.gguf"), "--type", "Q4_0", "--method", "gptq", "--calib", calib),
            "quantize reads F32, F16 or BF16");
        AssertRefused(KilnRunner.Run("quantize", model, Path.Combine(_dir, "c.gguf"), "--type", "Q4_0", "--method", "awq"), "--method awq is not known");
        AssertRefused(KilnRunner.Run("quantize", model, Path.Combine(_dir, "d.gguf"), "--type", "Q4_0", "--method", "gptq", "--calib", calib, "--scales", "mse"),
            "--scales mse is not known");
        AssertRefused(KilnRunner.Run("quantize", model, Path.Combine(_dir, "e.gguf"), "--type", "Q4_0", "--scales", "max"),
            "--calib, --act-order, --scales and --one-pass belong to --method gptq");
        Assert.Equal(["calib.txt", "q8.gguf", "random.gguf"], Files());
    }
}
