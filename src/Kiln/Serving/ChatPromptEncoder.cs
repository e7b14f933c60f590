using Kiln.Inference.Chat;
using Kiln.Tokenizers;

namespace Kiln.Serving;

/// <summary>
/// Turns a conversation into prompt tokens with a model's chat template (special-token markup parsed), and says
/// which stop strings the template needs beside the end-of-generation tokens.
/// </summary>
public sealed class ChatPromptEncoder
{
    private readonly Tokenizer _tokenizer;
    private readonly string _bos;
    private readonly string _eos;

    public ChatPromptEncoder(Tokenizer tokenizer, ChatTemplate template)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        _tokenizer = tokenizer;
        Template = template;
        _bos = tokenizer.BosId >= 0 ? tokenizer.GetTokenText(tokenizer.BosId) : "";
        _eos = tokenizer.EosId >= 0 ? tokenizer.GetTokenText(tokenizer.EosId) : "";
    }

    public ChatTemplate Template { get; }

    /// <summary>The prompt tokens for <paramref name="messages"/>, ending with the cue for the assistant's reply.</summary>
    public int[] Encode(IReadOnlyList<ChatMessage> messages)
    {
        string text = Template.Render(messages, addGenerationPrompt: true, _bos, _eos);
        return _tokenizer.Encode(text, addSpecial: true, parseSpecial: true);
    }

    /// <summary>The caller's stop strings plus the template's own end-of-turn markers.</summary>
    public IReadOnlyList<string> StopStrings(IEnumerable<string> requested) =>
        requested.Concat(Template.DefaultStopStrings).Where(s => s.Length > 0).Distinct(StringComparer.Ordinal).ToArray();
}
