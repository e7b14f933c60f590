namespace Kiln.Inference.Chat;

/// <summary>
/// Turns a conversation into the prompt text a chat model was trained on. Kiln does not run Jinja: like llama.cpp's
/// <c>llama_chat_apply_template</c>, it recognises the model's <c>tokenizer.chat_template</c> by characteristic
/// markers (<see cref="Detect"/>) and renders the matching built-in format (<see cref="Render"/>) with llama.cpp's
/// exact output. The rendered text contains special-token markup ("&lt;|im_start|&gt;", "[INST]", …), so the caller
/// tokenizes it with special-token parsing on.
/// </summary>
public sealed class ChatTemplate
{
    private static readonly ChatTemplate[] ByKind = CreateAll();

    private ChatTemplate(ChatTemplateKind kind, string[] defaultStopStrings)
    {
        Kind = kind;
        DefaultStopStrings = defaultStopStrings;
    }

    public ChatTemplateKind Kind { get; }

    /// <summary>llama.cpp's short name for this template ("chatml", "llama3", …; "plain" for Kiln's fallback).</summary>
    public string Name => ChatTemplateDetection.NameOf(Kind);

    /// <summary>
    /// Text markers that end the assistant's turn or begin the next turn, for use with
    /// <see cref="Text.StopStringMatcher"/> as a safety net beside the end-of-generation token ids
    /// (e.g. ChatML "&lt;|im_end|&gt;", Llama 3 "&lt;|eot_id|&gt;", Plain "\nUser:").
    /// </summary>
    public IReadOnlyList<string> DefaultStopStrings { get; }

    /// <summary>
    /// Picks the template for a model from its <c>tokenizer.chat_template</c> text (or a llama.cpp template name such
    /// as "chatml"), with llama.cpp's detection rules. Null, empty or unrecognised text gives <see cref="ChatTemplateKind.Plain"/>.
    /// </summary>
    public static ChatTemplate Detect(string? jinjaTemplate)
    {
        if (string.IsNullOrEmpty(jinjaTemplate))
            return ByKind[(int)ChatTemplateKind.Plain];
        return ByKind[(int)(ChatTemplateDetection.Detect(jinjaTemplate) ?? ChatTemplateKind.Plain)];
    }

    /// <summary>True when <paramref name="jinjaTemplate"/> is recognised (as a template text or a name).</summary>
    public static bool IsRecognised(string? jinjaTemplate) =>
        !string.IsNullOrEmpty(jinjaTemplate) && ChatTemplateDetection.Detect(jinjaTemplate) is not null;

    public static ChatTemplate For(ChatTemplateKind kind)
    {
        if ((uint)kind >= (uint)ByKind.Length)
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown chat template kind.");
        return ByKind[(int)kind];
    }

    /// <summary>
    /// The prompt text for <paramref name="messages"/>; with <paramref name="addGenerationPrompt"/> it ends with the
    /// cue that opens the assistant's reply. <paramref name="bosText"/>/<paramref name="eosText"/> are the model's BOS and
    /// EOS token texts, written where the format puts them inside the history (Llama 2, Mistral, …); a leading BOS is
    /// never written (the tokenizer adds it). Roles must be "system", "user" or "assistant".
    /// </summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, string bosText, string eosText)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(bosText);
        ArgumentNullException.ThrowIfNull(eosText);
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage? m = messages[i];
            if (m is null)
                throw new ArgumentException($"Chat message {i} is null.", nameof(messages));
            if (m.Role is not (ChatMessage.System or ChatMessage.User or ChatMessage.Assistant))
                throw new ArgumentException($"Chat message {i} has role '{m.Role}'; the roles are 'system', 'user' and 'assistant'.", nameof(messages));
            if (m.Content is null)
                throw new ArgumentException($"Chat message {i} has null content.", nameof(messages));
        }
        return ChatPromptRenderer.Render(Kind, messages, addGenerationPrompt, bosText, eosText);
    }

    public override string ToString() => Name;

    private static ChatTemplate[] CreateAll()
    {
        var kinds = Enum.GetValues<ChatTemplateKind>();
        var all = new ChatTemplate[kinds.Length];
        foreach (var kind in kinds)
            all[(int)kind] = new ChatTemplate(kind, StopStringsOf(kind));
        return all;
    }

    private static string[] StopStringsOf(ChatTemplateKind kind) => kind switch
    {
        ChatTemplateKind.Plain => ["\nUser:", "\nSystem:"],
        ChatTemplateKind.ChatML => ["<|im_end|>", "<|im_start|>"],
        ChatTemplateKind.Llama2 or ChatTemplateKind.Llama2Sys or ChatTemplateKind.Llama2SysBos or ChatTemplateKind.Llama2SysStrip
            or ChatTemplateKind.MistralV1 or ChatTemplateKind.MistralV3 or ChatTemplateKind.MistralV3Tekken
            or ChatTemplateKind.MistralV7 => ["[INST]"],
        ChatTemplateKind.Phi3 => ["<|end|>", "<|user|>"],
        ChatTemplateKind.Phi4 => ["<|im_end|>", "<|im_start|>"],
        ChatTemplateKind.Falcon3 => ["<|user|>", "<|system|>"],
        ChatTemplateKind.Zephyr => ["<|endoftext|>", "<|user|>"],
        ChatTemplateKind.Monarch => ["\nuser\n"],
        ChatTemplateKind.Gemma => ["<end_of_turn>", "<start_of_turn>"],
        ChatTemplateKind.Orion => ["Human:"],
        ChatTemplateKind.OpenChat => ["<|end_of_turn|>", "GPT4 Correct User:"],
        ChatTemplateKind.Vicuna or ChatTemplateKind.VicunaOrca => ["USER:"],
        ChatTemplateKind.DeepSeek => ["<|EOT|>", "### Instruction:"],
        ChatTemplateKind.DeepSeek2 => ["<｜end▁of▁sentence｜>", "User:"],
        ChatTemplateKind.DeepSeek3 => ["<｜end▁of▁sentence｜>", "<｜User｜>"],
        ChatTemplateKind.CommandR => ["<|END_OF_TURN_TOKEN|>"],
        ChatTemplateKind.Llama3 => ["<|eot_id|>", "<|start_header_id|>"],
        ChatTemplateKind.ChatGlm3 or ChatTemplateKind.ChatGlm4 or ChatTemplateKind.GlmEdge => ["<|user|>", "<|observation|>"],
        ChatTemplateKind.MiniCpm => ["<用户>"],
        ChatTemplateKind.Exaone3 => ["[|endofturn|]", "[|user|]"],
        ChatTemplateKind.RwkvWorld => ["\n\nUser:"],
        ChatTemplateKind.Granite => ["<|end_of_text|>", "<|start_of_role|>"],
        ChatTemplateKind.GigaChat => ["<|message_sep|>"],
        ChatTemplateKind.Megrez => ["<|turn_end|>", "<|role_start|>"],
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown chat template kind."),
    };
}
