using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Kiln.Formats.Gguf;
using Kiln.Tensors;

namespace Kiln.Cli.Tests;

public sealed class BenchCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-bench-cli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string RandomModel() => new RandomLlama { WeightType = GgmlType.Q8_0 }.Write(Path.Combine(_dir, "random.gguf"));

    public static TheoryData<string[], string> BadInvocations() => new()
    {
        { ["bench"], "--model FILE or --synthetic NAME" },
        { ["bench", "-m", "a.gguf", "--synthetic", "llama2-7b"], "not both" },
        { ["bench", "--synthetic", "gpt-9"], "unknown synthetic model 'gpt-9' (known: tinyllama-1.1b, llama2-7b, llama3-8b, qwen2-0.5b)" },
        { ["bench", "--synthetic", "llama2-7b", "--type", "q9_9"], "unknown weight type 'q9_9'" },
        { ["bench", "--synthetic", "llama2-7b", "--type", "iq2_xxs"], "type iq2_xxs is not supported yet" },
        { ["bench", "-m", "a.gguf", "--type", "f16"], "--type applies to --synthetic" },
        { ["bench", "--synthetic", "tinyllama-1.1b", "-p", "-1"], "--n-prompt -1 is out of range" },
        { ["bench", "--synthetic", "tinyllama-1.1b", "-p", "100000"], "--n-prompt 100000 is out of range" },
        { ["bench", "--synthetic", "tinyllama-1.1b", "-n", "-5"], "--n-gen -5 is out of range" },
        { ["bench", "--synthetic", "tinyllama-1.1b", "-r", "0"], "--repetitions 0 is out of range" },
        { ["bench", "--synthetic", "tinyllama-1.1b", "-t", "-1"], "--threads -1 is out of range" },
        { ["bench", "--synthetic", "tinyllama-1.1b", "-t", "5000"], "--threads 5000 is out of range" },
        { ["bench", "--synthetic", "tinyllama-1.1b", "-p", "0", "-n", "0"], "nothing to measure" },
        { ["bench", "--memory", "--memory-mib", "1"], "--memory-mib 1 is out of range" },
    };

    [Theory]
    [MemberData(nameof(BadInvocations))]
    public void BadInputIsOneUsageErrorLine(string[] args, string message)
    {
        var r = KilnRunner.Run(args);
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("", r.Stdout);
        string line = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("kiln: error: ", line);
        Assert.Contains(message, line);
    }

    [Fact]
    public void Q4KMIsRefusedUntilItsTypesAreSupported()
    {
        var r = KilnRunner.Run("bench", "--synthetic", "tinyllama-1.1b", "--type", "q4_k_m", "-p", "0", "-n", "0");
        Assert.Equal(2, r.ExitCode);
        if (!RowKernels.Supports(GgmlType.Q4_K) || !RowKernels.Supports(GgmlType.Q6_K))
            Assert.Contains("q4_k_m needs", r.Stderr);
        else
            Assert.Contains("nothing to measure", r.Stderr);
    }

    [Fact]
    public void AMissingModelFileIsOneLine()
    {
        var r = KilnRunner.Run("bench", "-m", Path.Combine(_dir, "nope.gguf"), "-p", "8", "-n", "4", "-r", "1");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("kiln: error: model file not found", r.Stderr);
    }

    [Fact]
    public void TablePrintsOneRowPerTestWithPositiveSpeeds()
    {
        var r = KilnRunner.Run("bench", "-m", RandomModel(), "-p", "8", "-n", "4", "-r", "1", "-t", "1");
        Assert.Equal(0, r.ExitCode);
        string[] lines = r.Stdout.Replace("\r\n", "\n").Split('\n');
        Assert.Matches(@"^\| model +\| type +\| +size \| +params \| threads \| test \| +t/s \| weights GB/s \|$", lines[0]);
        Assert.Matches(@"^\| -+ \| -+ \| -+: \|", lines[1]);
        var pp = Row(lines[2]);
        var tg = Row(lines[3]);
        Assert.Equal(["random.gguf", "q8_0", "0.00 GiB", "1", "pp8"], new[] { pp[0], pp[1], pp[2], pp[4], pp[5] });
        Assert.Equal("tg4", tg[5]);
        Assert.True(Speed(pp[6]) > 0);
        Assert.True(Speed(tg[6]) > 0);
        Assert.Matches(@"^\d+\.\d\d \(\d+%\)$", tg[7]);
        Assert.Equal("", pp[7]);
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^\| read \(quick\) \| +1 \| 0\.25 GiB \| +3 \| +\d+\.\d\d \| +\d+\.\d\d \|$"));
    }

    [Fact]
    public void FlashAttentionFlagIsAccepted()
    {
        var r = KilnRunner.Run("bench", "-m", RandomModel(), "-p", "40", "-n", "2", "-r", "1", "-t", "1", "--flash-attn");
        Assert.Equal(0, r.ExitCode);
        string[] lines = r.Stdout.Replace("\r\n", "\n").Split('\n');
        Assert.Matches(@"^\| model +\| type +\| +size \| +params \| threads \| fa \| test \| +t/s \| weights GB/s \|$", lines[0]);
        Assert.Matches(@"^\| random\.gguf +\| q8_0 \| .* \|  1 \| pp40 \| ", lines[2]);
        var json = KilnRunner.Run("bench", "-m", RandomModel(), "-p", "8", "-n", "0", "-r", "1", "-t", "1", "-fa", "--json");
        Assert.Equal(0, json.ExitCode);
        Assert.Contains("\"flash_attention\": true", json.Stdout);
    }

    [Fact]
    public void JsonIsOneDocumentWithNamedFields()
    {
        string model = RandomModel();
        var r = KilnRunner.Run("bench", "-m", model, "-p", "8", "-n", "4", "-r", "2", "-t", "1", "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        var m = root.GetProperty("model");
        Assert.Equal("file", m.GetProperty("source").GetString());
        Assert.Equal(Path.GetFullPath(model), m.GetProperty("path").GetString());
        Assert.Equal("llama", m.GetProperty("architecture").GetString());
        Assert.Equal("q8_0", m.GetProperty("weight_type").GetString());
        using (var gguf = GgufFile.Open(model))
        {
            Assert.Equal(gguf.Tensors.Sum(t => t.ByteSize), m.GetProperty("size_bytes").GetInt64());
            Assert.Equal(gguf.Tensors.Sum(t => t.ElementCount), m.GetProperty("parameters").GetInt64());
        }
        Assert.True(m.GetProperty("weight_bytes_per_token").GetInt64() > 0);
        Assert.Equal(1, root.GetProperty("threads").GetInt32());
        Assert.Equal(2, root.GetProperty("repetitions").GetInt32());

        var tests = root.GetProperty("tests").EnumerateArray().ToArray();
        Assert.Equal(["pp8", "tg4"], tests.Select(t => t.GetProperty("name").GetString()));
        Assert.Equal(["pp", "tg"], tests.Select(t => t.GetProperty("kind").GetString()));
        foreach (var t in tests)
        {
            var samples = t.GetProperty("samples").EnumerateArray().Select(s => s.GetDouble()).ToArray();
            Assert.Equal(2, samples.Length);
            Assert.All(samples, s => Assert.True(s > 0));
            Assert.Equal(samples.Average(), t.GetProperty("tokens_per_second").GetDouble(), 9);
            Assert.True(t.GetProperty("tokens_per_second_stddev").GetDouble() >= 0);
        }
        Assert.Equal(JsonValueKind.Null, tests[0].GetProperty("weight_bandwidth_gbps").ValueKind);
        double weights = tests[1].GetProperty("weight_bandwidth_gbps").GetDouble();
        Assert.Equal(m.GetProperty("weight_bytes_per_token").GetInt64() * tests[1].GetProperty("tokens_per_second").GetDouble() / 1e9, weights, 9);

        var memory = root.GetProperty("memory");
        Assert.True(memory.GetProperty("quick").GetBoolean());
        Assert.True(memory.GetProperty("best_gbps").GetDouble() > 0);
        Assert.Equal(weights / memory.GetProperty("best_gbps").GetDouble(), tests[1].GetProperty("read_bandwidth_fraction").GetDouble(), 9);
    }

    [Fact]
    public void MemoryAloneMeasuresOnlyTheReadBandwidth()
    {
        var r = KilnRunner.Run("bench", "--memory", "--memory-mib", "32", "-t", "2", "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("model").ValueKind);
        Assert.Empty(doc.RootElement.GetProperty("tests").EnumerateArray());
        var memory = doc.RootElement.GetProperty("memory");
        Assert.Equal(32L << 20, memory.GetProperty("bytes").GetInt64());
        Assert.Equal(2, memory.GetProperty("threads").GetInt32());
        Assert.Equal(7, memory.GetProperty("pass_gbps").GetArrayLength());
        Assert.False(memory.GetProperty("quick").GetBoolean());
        Assert.True(memory.GetProperty("median_gbps").GetDouble() > 0);
    }

    private static string[] Row(string line) => line.Trim('|').Split('|').Select(c => c.Trim()).ToArray();

    /// <summary>"123.45 ± 6.78" → 123.45.</summary>
    private static double Speed(string cell)
    {
        var m = Regex.Match(cell, @"^(\d+\.\d\d) ± (\d+\.\d\d)$");
        Assert.True(m.Success, cell);
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }
}
