namespace Kiln.Benchmarking;

/// <summary>llama-bench's two tests: a prompt as one batch (pp), and tokens generated one at a time (tg).</summary>
public enum InferenceTestKind
{
    PromptProcessing,
    TextGeneration,
}
