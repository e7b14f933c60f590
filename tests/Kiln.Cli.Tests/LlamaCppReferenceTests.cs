using System.Globalization;
using Kiln.Formats.Gguf;
using Kiln.Tensors;
using Xunit.Abstractions;

namespace Kiln.Cli.Tests;

/// <summary>
/// llama.cpp itself (the CPU build node-llama-cpp ships; see LlamaCppReference) loads the GGUF files Kiln writes —
/// trained exports, LoRA adapters, merged models, K-quants, GPTQ — and picks, token for token, the greedy
/// continuation Kiln picks for the same prompt ids. Skipped when the reference is not installed.
/// </summary>
public sealed class LlamaCppReferenceTests(LlamaCppTestModels models, ITestOutputHelper output) : IClassFixture<LlamaCppTestModels>
{
    private const int Count = 40;

    /// <summary>
    /// Both engines continue <paramref name="prompt"/> (tokenized by Kiln) for <see cref="Count"/> tokens at temperature 0;
    /// the ids must agree, and kiln run --temp 0 must print llama.cpp's text.
    /// </summary>
    private void AssertSameGreedyTokens(string model, string prompt, params string[] adapters)
    {
        int[] ids = KilnGreedy.Tokenize(model, prompt);
        var kiln = KilnGreedy.Generate(model, ids, Count, adapters);
        var llama = LlamaCppReference.Greedy(model, ids, Count, adapters);
        Assert.Equal(ids, llama.Prompt);
        int differ = Enumerable.Range(0, Count).FirstOrDefault(i => kiln.Tokens[i] != llama.Tokens[i], -1);
        if (differ >= 0)
            Assert.Fail($"{Path.GetFileName(model)}: llama.cpp and Kiln differ first at generated token {differ}: llama.cpp {llama.Tokens[differ]}, " +
            $"Kiln {kiln.Tokens[differ]} (Kiln's logit lead over the runner-up there: {kiln.Margins[differ].ToString("G3", CultureInfo.InvariantCulture)})\n" +
            $"llama.cpp: [{string.Join(',', llama.Tokens)}]\nKiln:      [{string.Join(',', kiln.Tokens)}]");
        output.WriteLine($"{Path.GetFileName(model)}: {Count} greedy tokens agree; Kiln's smallest logit lead over the runner-up {kiln.Margins.Min():G3}");

        string[] loras = [.. adapters.SelectMany(a => new[] { "--lora", a })];
        var run = KilnRunner.Run(["run", "-m", model, .. loras, "-p", prompt, "-n", Count.ToString(CultureInfo.InvariantCulture), "--temp", "0",
            "--ignore-eos", "--no-display-prompt", "-t", "1"]);
        Assert.True(run.ExitCode == 0, run.Stderr);
        Assert.Equal(llama.Text + "\n", run.Stdout); // kiln run ends its output with a newline
    }

    private static IReadOnlySet<GgmlType> TensorTypes(string model)
    {
        using var file = GgufFile.Open(model);
        return file.Tensors.Select(t => t.Type).ToHashSet();
    }

    private string Export(string checkpoint, string type, string name)
    {
        var r = KilnRunner.Run("export", checkpoint, "-o", models.P(name), "--type", type);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return models.P(name);
    }

    [LlamaCppFact]
    public void BuiltInModel() => AssertSameGreedyTokens(LlamaCppTestModels.BuiltIn, "ROMEO:");

    [LlamaCppTheory]
    [InlineData("f16")]
    [InlineData("q8_0")]
    public void TrainedLlamaExport(string type) =>
        AssertSameGreedyTokens(Export(models.LlamaCheckpoint, type, $"llama-{type}.gguf"), "how I");

    [LlamaCppTheory]
    [InlineData("f16")]
    [InlineData("q8_0")]
    public void TrainedGpt2Export(string type) =>
        AssertSameGreedyTokens(Export(models.Gpt2Checkpoint, type, $"gpt2-{type}.gguf"), "how I");

    /// <summary>The adapter applied by llama.cpp at load time, and the adapter merged into the weights by kiln export.</summary>
    [LlamaCppFact]
    public void LoraAdapterAndMergedModel()
    {
        string builtIn = LlamaCppTestModels.BuiltIn;
        int[] ids = KilnGreedy.Tokenize(builtIn, "ROMEO:");
        Assert.NotEqual(KilnGreedy.Generate(builtIn, ids, Count).Tokens, KilnGreedy.Generate(builtIn, ids, Count, models.Adapter).Tokens);
        AssertSameGreedyTokens(builtIn, "ROMEO:", models.Adapter);

        foreach (string type in (string[])["f16", "base"])
        {
            string merged = models.P($"merged-{type}.gguf");
            var r = KilnRunner.Run("export", builtIn, "--merge-lora", models.Adapter, "--type", type, "-o", merged);
            Assert.True(r.ExitCode == 0, r.Stderr);
            AssertSameGreedyTokens(merged, "ROMEO:");
        }
    }

    /// <summary>kiln quantize's K types (the llama-quantize mixes) of the trained F16 Llama export.</summary>
    [LlamaCppTheory]
    [InlineData("Q2_K", GgmlType.Q2_K)]
    [InlineData("Q3_K_M", GgmlType.Q3_K)]
    [InlineData("Q4_K_M", GgmlType.Q4_K)]
    [InlineData("Q5_K_M", GgmlType.Q5_K)]
    [InlineData("Q6_K", GgmlType.Q6_K)]
    public void KQuantizedModel(string type, GgmlType mainType)
    {
        string f16 = Export(models.LlamaCheckpoint, "f16", $"k-{type}-f16.gguf"), quantized = models.P($"llama-{type}.gguf");
        var q = KilnRunner.Run("quantize", f16, quantized, "--type", type, "-t", "2");
        Assert.True(q.ExitCode == 0, q.Stderr);
        Assert.DoesNotContain("warning", q.Stderr);
        Assert.Contains(mainType, TensorTypes(quantized));
        AssertSameGreedyTokens(quantized, "how I");
    }

    [LlamaCppFact]
    public void GptqQuantizedModel()
    {
        string f16 = Export(models.LlamaCheckpoint, "f16", "gptq-f16.gguf"), quantized = models.P("llama-gptq-Q4_K_M.gguf");
        var q = KilnRunner.Run("quantize", f16, quantized, "--type", "Q4_K_M", "-t", "2", "--method", "gptq", "--calib", models.Text, "--samples", "4");
        Assert.True(q.ExitCode == 0, q.Stderr);
        Assert.Contains(GgmlType.Q4_K, TensorTypes(quantized));
        AssertSameGreedyTokens(quantized, "how I");
    }
}
