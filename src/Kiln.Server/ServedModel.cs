using Kiln.Inference.Chat;
using Kiln.Serving;

namespace Kiln.Server;

/// <summary>What the server serves: an engine and the chat template of its model.</summary>
public sealed record ServedModel(IInferenceEngine Engine, ChatTemplate ChatTemplate)
{
    /// <summary>Disposed after the engine when the server stops (the model file and context behind the engine).</summary>
    public IDisposable? Resources { get; init; }

    public ChatPromptEncoder ChatPrompt { get; } = new(Engine.Tokenizer, ChatTemplate);
}
