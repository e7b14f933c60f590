namespace Kiln.Inference.Chat;

/// <summary>
/// The prompt formats Kiln renders: llama.cpp's built-in templates (<c>llm_chat_template</c>, b4748; the comment
/// gives llama.cpp's name for each) plus <see cref="Plain"/>, Kiln's fallback for models without a known template.
/// </summary>
public enum ChatTemplateKind
{
    /// <summary>Kiln's fallback: "System: …\nUser: …\nAssistant:".</summary>
    Plain,
    /// <summary>chatml</summary>
    ChatML,
    /// <summary>llama2 (system text folded into the first [INST] without &lt;&lt;SYS&gt;&gt;)</summary>
    Llama2,
    /// <summary>llama2-sys</summary>
    Llama2Sys,
    /// <summary>llama2-sys-bos</summary>
    Llama2SysBos,
    /// <summary>llama2-sys-strip</summary>
    Llama2SysStrip,
    /// <summary>mistral-v1</summary>
    MistralV1,
    /// <summary>mistral-v3</summary>
    MistralV3,
    /// <summary>mistral-v3-tekken</summary>
    MistralV3Tekken,
    /// <summary>mistral-v7</summary>
    MistralV7,
    /// <summary>phi3</summary>
    Phi3,
    /// <summary>phi4</summary>
    Phi4,
    /// <summary>falcon3</summary>
    Falcon3,
    /// <summary>zephyr</summary>
    Zephyr,
    /// <summary>monarch</summary>
    Monarch,
    /// <summary>gemma</summary>
    Gemma,
    /// <summary>orion</summary>
    Orion,
    /// <summary>openchat</summary>
    OpenChat,
    /// <summary>vicuna</summary>
    Vicuna,
    /// <summary>vicuna-orca</summary>
    VicunaOrca,
    /// <summary>deepseek</summary>
    DeepSeek,
    /// <summary>deepseek2</summary>
    DeepSeek2,
    /// <summary>deepseek3</summary>
    DeepSeek3,
    /// <summary>command-r</summary>
    CommandR,
    /// <summary>llama3</summary>
    Llama3,
    /// <summary>chatglm3</summary>
    ChatGlm3,
    /// <summary>chatglm4</summary>
    ChatGlm4,
    /// <summary>glmedge</summary>
    GlmEdge,
    /// <summary>minicpm</summary>
    MiniCpm,
    /// <summary>exaone3</summary>
    Exaone3,
    /// <summary>rwkv-world</summary>
    RwkvWorld,
    /// <summary>granite</summary>
    Granite,
    /// <summary>gigachat</summary>
    GigaChat,
    /// <summary>megrez</summary>
    Megrez,
}
