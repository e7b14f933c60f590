namespace Kiln.Inference.Chat;

/// <summary>
/// Recognises a model's Jinja chat template by characteristic substrings, in the order and with the markers of
/// llama.cpp's <c>llm_chat_detect_template</c> (b4748): the first rule that matches wins, so the order matters
/// (e.g. "&lt;|im_start|&gt;" is tested before "[INST]", and Phi-3's "&lt;|assistant|&gt;"+"&lt;|end|&gt;" before Falcon 3).
/// A template may also be given by llama.cpp's short name ("chatml", "llama3", …).
/// </summary>
internal static class ChatTemplateDetection
{
    private static readonly Dictionary<string, ChatTemplateKind> ByName = new(StringComparer.Ordinal)
    {
        ["chatml"] = ChatTemplateKind.ChatML,
        ["llama2"] = ChatTemplateKind.Llama2,
        ["llama2-sys"] = ChatTemplateKind.Llama2Sys,
        ["llama2-sys-bos"] = ChatTemplateKind.Llama2SysBos,
        ["llama2-sys-strip"] = ChatTemplateKind.Llama2SysStrip,
        ["mistral-v1"] = ChatTemplateKind.MistralV1,
        ["mistral-v3"] = ChatTemplateKind.MistralV3,
        ["mistral-v3-tekken"] = ChatTemplateKind.MistralV3Tekken,
        ["mistral-v7"] = ChatTemplateKind.MistralV7,
        ["phi3"] = ChatTemplateKind.Phi3,
        ["phi4"] = ChatTemplateKind.Phi4,
        ["falcon3"] = ChatTemplateKind.Falcon3,
        ["zephyr"] = ChatTemplateKind.Zephyr,
        ["monarch"] = ChatTemplateKind.Monarch,
        ["gemma"] = ChatTemplateKind.Gemma,
        ["orion"] = ChatTemplateKind.Orion,
        ["openchat"] = ChatTemplateKind.OpenChat,
        ["vicuna"] = ChatTemplateKind.Vicuna,
        ["vicuna-orca"] = ChatTemplateKind.VicunaOrca,
        ["deepseek"] = ChatTemplateKind.DeepSeek,
        ["deepseek2"] = ChatTemplateKind.DeepSeek2,
        ["deepseek3"] = ChatTemplateKind.DeepSeek3,
        ["command-r"] = ChatTemplateKind.CommandR,
        ["llama3"] = ChatTemplateKind.Llama3,
        ["chatglm3"] = ChatTemplateKind.ChatGlm3,
        ["chatglm4"] = ChatTemplateKind.ChatGlm4,
        ["glmedge"] = ChatTemplateKind.GlmEdge,
        ["minicpm"] = ChatTemplateKind.MiniCpm,
        ["exaone3"] = ChatTemplateKind.Exaone3,
        ["rwkv-world"] = ChatTemplateKind.RwkvWorld,
        ["granite"] = ChatTemplateKind.Granite,
        ["gigachat"] = ChatTemplateKind.GigaChat,
        ["megrez"] = ChatTemplateKind.Megrez,
        // Kiln's own fallback, so every kind has a name.
        ["plain"] = ChatTemplateKind.Plain,
    };

    public static IReadOnlyDictionary<string, ChatTemplateKind> Names => ByName;

    public static string NameOf(ChatTemplateKind kind)
    {
        foreach (var (name, k) in ByName)
        {
            if (k == kind)
                return name;
        }
        throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown chat template kind.");
    }

    /// <summary>The detected kind, or null when no rule matches.</summary>
    public static ChatTemplateKind? Detect(string template)
    {
        if (ByName.TryGetValue(template, out var named))
            return named;

        bool Has(string marker) => template.Contains(marker, StringComparison.Ordinal);

        if (Has("<|im_start|>"))
            return Has("<|im_sep|>") ? ChatTemplateKind.Phi4 : ChatTemplateKind.ChatML;
        if (template.StartsWith("mistral", StringComparison.Ordinal) || Has("[INST]"))
        {
            if (Has("[SYSTEM_PROMPT]"))
                return ChatTemplateKind.MistralV7;
            // Official Mistral 'v1' (system message glued with a leading space) and 'v3'/'v3-tekken' (tool support).
            if (Has("' [INST] ' + system_message") || Has("[AVAILABLE_TOOLS]"))
            {
                if (Has(" [INST]"))
                    return ChatTemplateKind.MistralV1;
                if (Has("\"[INST]\""))
                    return ChatTemplateKind.MistralV3Tekken;
                return ChatTemplateKind.MistralV3;
            }
            // Llama 2 and its community variants.
            if (Has("content.strip()"))
                return ChatTemplateKind.Llama2SysStrip;
            if (Has("bos_token + '[INST]"))
                return ChatTemplateKind.Llama2SysBos;
            if (Has("<<SYS>>"))
                return ChatTemplateKind.Llama2Sys;
            return ChatTemplateKind.Llama2;
        }
        if (Has("<|assistant|>") && Has("<|end|>"))
            return ChatTemplateKind.Phi3;
        if (Has("<|assistant|>") && Has("<|user|>"))
            return Has("</s>") ? ChatTemplateKind.Falcon3 : ChatTemplateKind.GlmEdge;
        if (Has("<|user|>") && Has("<|endoftext|>"))
            return ChatTemplateKind.Zephyr;
        if (Has("bos_token + message['role']"))
            return ChatTemplateKind.Monarch;
        if (Has("<start_of_turn>"))
            return ChatTemplateKind.Gemma;
        if (Has("'\\n\\nAssistant: ' + eos_token"))
            return ChatTemplateKind.Orion;
        if (Has("GPT4 Correct "))
            return ChatTemplateKind.OpenChat;
        if (Has("USER: ") && Has("ASSISTANT: "))
            return Has("SYSTEM: ") ? ChatTemplateKind.VicunaOrca : ChatTemplateKind.Vicuna;
        if (Has("### Instruction:") && Has("<|EOT|>"))
            return ChatTemplateKind.DeepSeek;
        if (Has("<|START_OF_TURN_TOKEN|>") && Has("<|USER_TOKEN|>"))
            return ChatTemplateKind.CommandR;
        if (Has("<|start_header_id|>") && Has("<|end_header_id|>"))
            return ChatTemplateKind.Llama3;
        if (Has("[gMASK]sop"))
            return ChatTemplateKind.ChatGlm3;
        if (Has("[gMASK]<sop>"))
            return ChatTemplateKind.ChatGlm4;
        if (Has("<用户>"))
            return ChatTemplateKind.MiniCpm;
        if (Has("'Assistant: ' + message['content'] + eos_token"))
            return ChatTemplateKind.DeepSeek2;
        if (Has("<｜Assistant｜>") && Has("<｜User｜>") && Has("<｜end▁of▁sentence｜>"))
            return ChatTemplateKind.DeepSeek3;
        if (Has("[|system|]") && Has("[|assistant|]") && Has("[|endofturn|]"))
            return ChatTemplateKind.Exaone3;
        if (Has("rwkv-world"))
            return ChatTemplateKind.RwkvWorld;
        if (Has("<|start_of_role|>"))
            return ChatTemplateKind.Granite;
        if (Has("message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]"))
            return ChatTemplateKind.GigaChat;
        if (Has("<|role_start|>"))
            return ChatTemplateKind.Megrez;
        return null;
    }
}
