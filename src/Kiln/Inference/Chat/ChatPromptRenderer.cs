using System.Text;

namespace Kiln.Inference.Chat;

/// <summary>
/// Renders a conversation as llama.cpp's <c>llm_chat_apply_template</c> (b4748) does for each built-in template:
/// same text, same quirks (which templates trim contents, where system prompts are folded in, where no generation
/// prompt is written). Where llama.cpp writes the SentencePiece BOS/EOS literals "&lt;s&gt;"/"&lt;/s&gt;" as the model's
/// BOS/EOS (Llama 2, Mistral, Monarch, Orion, Vicuna, GigaChat), the caller's BOS/EOS text is written instead, which
/// is identical for the models those templates belong to. Family-specific markers (DeepSeek's end of sentence, Zephyr's
/// "&lt;|endoftext|&gt;") stay literal, as in llama.cpp. No leading BOS is added: the tokenizer adds it.
/// </summary>
internal static class ChatPromptRenderer
{
    public static string Render(ChatTemplateKind kind, IReadOnlyList<ChatMessage> chat, bool addAssistant, string bos, string eos)
    {
        var sb = new StringBuilder();
        switch (kind)
        {
            case ChatTemplateKind.Plain:
                foreach (var m in chat)
                    sb.Append(PlainRoleLabel(m.Role)).Append(": ").Append(m.Content).Append('\n');
                if (addAssistant)
                    sb.Append("Assistant:");
                break;

            case ChatTemplateKind.ChatML:
                foreach (var m in chat)
                    sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
                if (addAssistant)
                    sb.Append("<|im_start|>assistant\n");
                break;

            case ChatTemplateKind.MistralV7:
                foreach (var m in chat)
                {
                    if (m.Role == ChatMessage.System)
                        sb.Append("[SYSTEM_PROMPT] ").Append(m.Content).Append("[/SYSTEM_PROMPT]");
                    else if (m.Role == ChatMessage.User)
                        sb.Append("[INST] ").Append(m.Content).Append("[/INST]");
                    else
                        sb.Append(' ').Append(m.Content).Append(eos);
                }
                break;

            case ChatTemplateKind.MistralV1:
            case ChatTemplateKind.MistralV3:
            case ChatTemplateKind.MistralV3Tekken:
                RenderMistral(sb, kind, chat, eos);
                break;

            case ChatTemplateKind.Llama2:
            case ChatTemplateKind.Llama2Sys:
            case ChatTemplateKind.Llama2SysBos:
            case ChatTemplateKind.Llama2SysStrip:
                RenderLlama2(sb, kind, chat, bos, eos);
                break;

            case ChatTemplateKind.Phi3:
                foreach (var m in chat)
                    sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append("<|end|>\n");
                if (addAssistant)
                    sb.Append("<|assistant|>\n");
                break;

            case ChatTemplateKind.Phi4:
                foreach (var m in chat)
                    sb.Append("<|im_start|>").Append(m.Role).Append("<|im_sep|>").Append(m.Content).Append("<|im_end|>");
                if (addAssistant)
                    sb.Append("<|im_start|>assistant<|im_sep|>");
                break;

            case ChatTemplateKind.Falcon3:
                foreach (var m in chat)
                    sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append('\n');
                if (addAssistant)
                    sb.Append("<|assistant|>\n");
                break;

            case ChatTemplateKind.Zephyr:
                foreach (var m in chat)
                    sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content).Append("<|endoftext|>\n");
                if (addAssistant)
                    sb.Append("<|assistant|>\n");
                break;

            case ChatTemplateKind.Monarch:
                for (int i = 0; i < chat.Count; i++)
                {
                    // BOS opens every turn but the first (the tokenizer's BOS opens that one).
                    if (i > 0)
                        sb.Append(bos);
                    sb.Append(chat[i].Role).Append('\n').Append(chat[i].Content).Append(eos).Append('\n');
                }
                if (addAssistant)
                    sb.Append(bos).Append("assistant\n");
                break;

            case ChatTemplateKind.Gemma:
                RenderGemma(sb, chat, addAssistant);
                break;

            case ChatTemplateKind.Orion:
            {
                // No system role: the latest system text is prepended to the next user turn.
                string system = "";
                foreach (var m in chat)
                {
                    if (m.Role == ChatMessage.System)
                    {
                        system = m.Content;
                    }
                    else if (m.Role == ChatMessage.User)
                    {
                        sb.Append("Human: ");
                        if (system.Length > 0)
                        {
                            sb.Append(system).Append("\n\n");
                            system = "";
                        }
                        sb.Append(m.Content).Append("\n\nAssistant: ").Append(eos);
                    }
                    else
                    {
                        sb.Append(m.Content).Append(eos);
                    }
                }
                break;
            }

            case ChatTemplateKind.OpenChat:
                foreach (var m in chat)
                {
                    if (m.Role == ChatMessage.System)
                        sb.Append(m.Content).Append("<|end_of_turn|>");
                    else
                        sb.Append("GPT4 Correct ").Append(char.ToUpperInvariant(m.Role[0])).Append(m.Role, 1, m.Role.Length - 1)
                          .Append(": ").Append(m.Content).Append("<|end_of_turn|>");
                }
                if (addAssistant)
                    sb.Append("GPT4 Correct Assistant:");
                break;

            case ChatTemplateKind.Vicuna:
            case ChatTemplateKind.VicunaOrca:
                foreach (var m in chat)
                {
                    if (m.Role == ChatMessage.System)
                    {
                        if (kind == ChatTemplateKind.VicunaOrca)
                            sb.Append("SYSTEM: ").Append(m.Content).Append('\n');
                        else
                            sb.Append(m.Content).Append("\n\n");
                    }
                    else if (m.Role == ChatMessage.User)
                    {
                        sb.Append("USER: ").Append(m.Content).Append('\n');
                    }
                    else
                    {
                        sb.Append("ASSISTANT: ").Append(m.Content).Append(eos).Append('\n');
                    }
                }
                if (addAssistant)
                    sb.Append("ASSISTANT:");
                break;

            case ChatTemplateKind.DeepSeek:
                foreach (var m in chat)
                {
                    if (m.Role == ChatMessage.System)
                        sb.Append(m.Content);
                    else if (m.Role == ChatMessage.User)
                        sb.Append("### Instruction:\n").Append(m.Content).Append('\n');
                    else
                        sb.Append("### Response:\n").Append(m.Content).Append("\n<|EOT|>\n");
                }
                if (addAssistant)
                    sb.Append("### Response:\n");
                break;

            case ChatTemplateKind.CommandR:
                foreach (var m in chat)
                {
                    string token = m.Role == ChatMessage.System ? "<|SYSTEM_TOKEN|>"
                        : m.Role == ChatMessage.User ? "<|USER_TOKEN|>" : "<|CHATBOT_TOKEN|>";
                    sb.Append("<|START_OF_TURN_TOKEN|>").Append(token).Append(Trim(m.Content)).Append("<|END_OF_TURN_TOKEN|>");
                }
                if (addAssistant)
                    sb.Append("<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
                break;

            case ChatTemplateKind.Llama3:
                foreach (var m in chat)
                    sb.Append("<|start_header_id|>").Append(m.Role).Append("<|end_header_id|>\n\n").Append(Trim(m.Content)).Append("<|eot_id|>");
                if (addAssistant)
                    sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;

            case ChatTemplateKind.ChatGlm3:
                sb.Append("[gMASK]sop");
                foreach (var m in chat)
                    sb.Append("<|").Append(m.Role).Append("|>\n ").Append(m.Content);
                if (addAssistant)
                    sb.Append("<|assistant|>");
                break;

            case ChatTemplateKind.ChatGlm4:
                sb.Append("[gMASK]<sop>");
                foreach (var m in chat)
                    sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content);
                if (addAssistant)
                    sb.Append("<|assistant|>");
                break;

            case ChatTemplateKind.GlmEdge:
                foreach (var m in chat)
                    sb.Append("<|").Append(m.Role).Append("|>\n").Append(m.Content);
                if (addAssistant)
                    sb.Append("<|assistant|>");
                break;

            case ChatTemplateKind.MiniCpm:
                foreach (var m in chat)
                {
                    if (m.Role == ChatMessage.User)
                        sb.Append("<用户>").Append(Trim(m.Content)).Append("<AI>");
                    else
                        sb.Append(Trim(m.Content));
                }
                break;

            case ChatTemplateKind.DeepSeek2:
                foreach (var m in chat)
                {
                    if (m.Role == ChatMessage.System)
                        sb.Append(m.Content).Append("\n\n");
                    else if (m.Role == ChatMessage.User)
                        sb.Append("User: ").Append(m.Content).Append("\n\n");
                    else
                        sb.Append("Assistant: ").Append(m.Content).Append("<｜end▁of▁sentence｜>");
                }
                if (addAssistant)
                    sb.Append("Assistant:");
                break;

            case ChatTemplateKind.DeepSeek3:
                foreach (var m in chat)
                {
                    if (m.Role == ChatMessage.System)
                        sb.Append(m.Content).Append("\n\n");
                    else if (m.Role == ChatMessage.User)
                        sb.Append("<｜User｜>").Append(m.Content);
                    else
                        sb.Append("<｜Assistant｜>").Append(m.Content).Append("<｜end▁of▁sentence｜>");
                }
                if (addAssistant)
                    sb.Append("<｜Assistant｜>");
                break;

            case ChatTemplateKind.Exaone3:
                foreach (var m in chat)
                {
                    if (m.Role == ChatMessage.System)
                        sb.Append("[|system|]").Append(Trim(m.Content)).Append("[|endofturn|]\n");
                    else if (m.Role == ChatMessage.User)
                        sb.Append("[|user|]").Append(Trim(m.Content)).Append('\n');
                    else
                        sb.Append("[|assistant|]").Append(Trim(m.Content)).Append("[|endofturn|]\n");
                }
                if (addAssistant)
                    sb.Append("[|assistant|]");
                break;

            case ChatTemplateKind.RwkvWorld:
                // The model's EOT is "\n\n"; every user turn already ends with the assistant cue.
                foreach (var m in chat)
                {
                    if (m.Role == ChatMessage.User)
                        sb.Append("User: ").Append(m.Content).Append("\n\nAssistant:");
                    else
                        sb.Append(m.Content).Append("\n\n");
                }
                break;

            case ChatTemplateKind.Granite:
                foreach (var m in chat)
                    sb.Append("<|start_of_role|>").Append(m.Role).Append("<|end_of_role|>").Append(m.Content).Append("<|end_of_text|>\n");
                if (addAssistant)
                    sb.Append("<|start_of_role|>assistant<|end_of_role|>\n");
                break;

            case ChatTemplateKind.GigaChat:
            {
                bool hasSystem = chat.Count > 0 && chat[0].Role == ChatMessage.System;
                sb.Append(bos);
                if (hasSystem)
                    sb.Append(chat[0].Content).Append("<|message_sep|>");
                for (int i = hasSystem ? 1 : 0; i < chat.Count; i++)
                {
                    var m = chat[i];
                    if (m.Role == ChatMessage.User)
                        sb.Append("user<|role_sep|>").Append(m.Content).Append("<|message_sep|>")
                          .Append("available functions<|role_sep|>[]<|message_sep|>");
                    else if (m.Role == ChatMessage.Assistant)
                        sb.Append("assistant<|role_sep|>").Append(m.Content).Append("<|message_sep|>");
                }
                if (addAssistant)
                    sb.Append("assistant<|role_sep|>");
                break;
            }

            case ChatTemplateKind.Megrez:
                foreach (var m in chat)
                    sb.Append("<|role_start|>").Append(m.Role).Append("<|role_end|>").Append(m.Content).Append("<|turn_end|>");
                if (addAssistant)
                    sb.Append("<|role_start|>assistant<|role_end|>");
                break;

            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown chat template kind.");
        }
        return sb.ToString();
    }

    private static string PlainRoleLabel(string role) => role switch
    {
        ChatMessage.System => "System",
        ChatMessage.User => "User",
        _ => "Assistant",
    };

    private static void RenderMistral(StringBuilder sb, ChatTemplateKind kind, IReadOnlyList<ChatMessage> chat, string eos)
    {
        string leading = kind == ChatTemplateKind.MistralV1 ? " " : "";
        string trailing = kind == ChatTemplateKind.MistralV3Tekken ? "" : " ";
        bool trimAssistant = kind == ChatTemplateKind.MistralV3;
        bool insideTurn = false;
        foreach (var m in chat)
        {
            if (!insideTurn)
            {
                sb.Append(leading).Append("[INST]").Append(trailing);
                insideTurn = true;
            }
            if (m.Role == ChatMessage.System)
            {
                sb.Append(m.Content).Append("\n\n");
            }
            else if (m.Role == ChatMessage.User)
            {
                sb.Append(m.Content).Append(leading).Append("[/INST]");
            }
            else
            {
                sb.Append(trailing).Append(trimAssistant ? Trim(m.Content) : m.Content).Append(eos);
                insideTurn = false;
            }
        }
    }

    private static void RenderLlama2(StringBuilder sb, ChatTemplateKind kind, IReadOnlyList<ChatMessage> chat, string bos, string eos)
    {
        bool systemBlock = kind != ChatTemplateKind.Llama2;
        bool bosInsideHistory = kind == ChatTemplateKind.Llama2SysBos;
        bool strip = kind == ChatTemplateKind.Llama2SysStrip;
        // The first [INST] is written up front; the tokenizer's BOS precedes it.
        bool insideTurn = true;
        sb.Append("[INST] ");
        foreach (var m in chat)
        {
            string content = strip ? Trim(m.Content) : m.Content;
            if (!insideTurn)
            {
                insideTurn = true;
                if (bosInsideHistory)
                    sb.Append(bos);
                sb.Append("[INST] ");
            }
            if (m.Role == ChatMessage.System)
            {
                if (systemBlock)
                    sb.Append("<<SYS>>\n").Append(content).Append("\n<</SYS>>\n\n");
                else
                    sb.Append(content).Append('\n');
            }
            else if (m.Role == ChatMessage.User)
            {
                sb.Append(content).Append(" [/INST]");
            }
            else
            {
                sb.Append(content).Append(eos);
                insideTurn = false;
            }
        }
    }

    private static void RenderGemma(StringBuilder sb, IReadOnlyList<ChatMessage> chat, bool addAssistant)
    {
        // Gemma has no system role: the (trimmed) system text opens the next user turn.
        string system = "";
        foreach (var m in chat)
        {
            if (m.Role == ChatMessage.System)
            {
                system = Trim(m.Content);
                continue;
            }
            string role = m.Role == ChatMessage.Assistant ? "model" : m.Role;
            sb.Append("<start_of_turn>").Append(role).Append('\n');
            if (system.Length > 0 && role != "model")
            {
                sb.Append(system).Append("\n\n");
                system = "";
            }
            sb.Append(Trim(m.Content)).Append("<end_of_turn>\n");
        }
        if (addAssistant)
            sb.Append("<start_of_turn>model\n");
    }

    /// <summary>llama.cpp's trim: C <c>isspace</c> in the "C" locale (space, \t, \n, \v, \f, \r), nothing else.</summary>
    internal static string Trim(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsCSpace(s[start]))
            start++;
        while (end > start && IsCSpace(s[end - 1]))
            end--;
        return start == 0 && end == s.Length ? s : s[start..end];
    }

    private static bool IsCSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';
}
