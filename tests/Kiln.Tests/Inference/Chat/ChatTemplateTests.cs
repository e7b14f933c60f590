using Kiln.Inference.Chat;

namespace Kiln.Tests.Inference.Chat;

public class ChatTemplateTests
{
    private static readonly ChatMessage[] Conversation = LlamaCppChatTemplateCases.Conversation;

    public static TheoryData<string> LlamaCppCases()
    {
        var data = new TheoryData<string>();
        foreach (var c in LlamaCppChatTemplateCases.All)
            data.Add(c.Name);
        return data;
    }

    private static LlamaCppChatTemplateCases.Case CaseNamed(string name) => LlamaCppChatTemplateCases.All.Single(c => c.Name == name);

    [Theory]
    [MemberData(nameof(LlamaCppCases))]
    public void Detect_RecognisesTheRealTemplate(string name)
    {
        var c = CaseNamed(name);
        Assert.Equal(c.Kind, ChatTemplate.Detect(c.Template).Kind);
        Assert.True(ChatTemplate.IsRecognised(c.Template));
    }

    [Theory]
    [MemberData(nameof(LlamaCppCases))]
    public void Render_ProducesLlamaCppExpectedText(string name)
    {
        var c = CaseNamed(name);
        string rendered = ChatTemplate.Detect(c.Template).Render(Conversation, addGenerationPrompt: true, bosText: "<s>", eosText: "</s>");
        Assert.Equal(c.Expected, rendered);
    }

    public static TheoryData<ChatTemplateKind, string> HandComputed => new()
    {
        // Read off llama.cpp's llm_chat_apply_template for the same conversation (no test vector upstream).
        { ChatTemplateKind.Zephyr, "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n<|assistant|>\nHi there<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n   I am an assistant   <|endoftext|>\n<|user|>\nAnother question<|endoftext|>\n<|assistant|>\n" },
        { ChatTemplateKind.Falcon3, "<|system|>\nYou are a helpful assistant\n<|user|>\nHello\n<|assistant|>\nHi there\n<|user|>\nWho are you\n<|assistant|>\n   I am an assistant   \n<|user|>\nAnother question\n<|assistant|>\n" },
        { ChatTemplateKind.DeepSeek3, "You are a helpful assistant\n\n<｜User｜>Hello<｜Assistant｜>Hi there<｜end▁of▁sentence｜><｜User｜>Who are you<｜Assistant｜>   I am an assistant   <｜end▁of▁sentence｜><｜User｜>Another question<｜Assistant｜>" },
        { ChatTemplateKind.Exaone3, "[|system|]You are a helpful assistant[|endofturn|]\n[|user|]Hello\n[|assistant|]Hi there[|endofturn|]\n[|user|]Who are you\n[|assistant|]I am an assistant[|endofturn|]\n[|user|]Another question\n[|assistant|]" },
        { ChatTemplateKind.RwkvWorld, "You are a helpful assistant\n\nUser: Hello\n\nAssistant:Hi there\n\nUser: Who are you\n\nAssistant:   I am an assistant   \n\nUser: Another question\n\nAssistant:" },
        { ChatTemplateKind.Llama2Sys, "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]" },
        { ChatTemplateKind.Plain, "System: You are a helpful assistant\nUser: Hello\nAssistant: Hi there\nUser: Who are you\nAssistant:    I am an assistant   \nUser: Another question\nAssistant:" },
    };

    [Theory]
    [MemberData(nameof(HandComputed))]
    public void Render_OtherKinds_MatchHandComputedText(ChatTemplateKind kind, string expected)
    {
        Assert.Equal(expected, ChatTemplate.For(kind).Render(Conversation, true, "<s>", "</s>"));
    }

    [Theory]
    // llama.cpp test-chat-template.cpp: common_chat_format_single of a lone system message (no generation prompt).
    [InlineData("chatml", "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n")]
    [InlineData("mistral-v1", " [INST] You are a helpful assistant\n\n")]
    [InlineData("mistral-v3", "[INST] You are a helpful assistant\n\n")]
    [InlineData("mistral-v3-tekken", "[INST]You are a helpful assistant\n\n")]
    [InlineData("mistral-v7", "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT]")]
    [InlineData("llama2", "[INST] You are a helpful assistant\n")]
    [InlineData("llama2-sys", "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\n")]
    [InlineData("mistral", "[INST] You are a helpful assistant\n")]
    [InlineData("gemma", "")]
    [InlineData("llama3", "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>")]
    [InlineData("gigachat", "<s>You are a helpful assistant<|message_sep|>")]
    public void Render_LoneSystemMessage_MatchesLlamaCpp(string name, string expected)
    {
        var template = ChatTemplate.Detect(name);
        Assert.Equal(expected, template.Render([new ChatMessage("system", "You are a helpful assistant")], false, "<s>", "</s>"));
    }

    [Theory]
    // llama.cpp test-chat-template.cpp, common_chat_format_single: the text a new user turn adds to
    // [system, user "Hello", assistant "I am assistant"] with a generation prompt.
    [InlineData("chatml", "\n<|im_start|>user\nHow are you<|im_end|>\n<|im_start|>assistant\n")]
    [InlineData("mistral-v1", " [INST] How are you [/INST]")]
    [InlineData("mistral-v3", "[INST] How are you[/INST]")]
    [InlineData("mistral-v3-tekken", "[INST]How are you[/INST]")]
    [InlineData("mistral-v7", "[INST] How are you[/INST]")]
    [InlineData("llama2", "[INST] How are you [/INST]")]
    [InlineData("mistral", "[INST] How are you [/INST]")]
    [InlineData("gemma", "\n<start_of_turn>user\nHow are you<end_of_turn>\n<start_of_turn>model\n")]
    [InlineData("llama3", "<|start_header_id|>user<|end_header_id|>\n\nHow are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")]
    [InlineData("gigachat", "user<|role_sep|>How are you<|message_sep|>available functions<|role_sep|>[]<|message_sep|>assistant<|role_sep|>")]
    public void Render_IncrementalUserTurn_MatchesLlamaCppFormatSingle(string name, string expected)
    {
        // common_chat_format_single renders the history without a generation prompt, then history + new message with
        // one, and returns the difference, prefixed with "\n" when the history ended with a newline.
        ChatMessage[] history =
        [
            new("system", "You are a helpful assistant"),
            new("user", "Hello"),
            new("assistant", "I am assistant"),
        ];
        var template = ChatTemplate.Detect(name);
        string before = template.Render(history, false, "", "</s>");
        string after = template.Render([.. history, new ChatMessage("user", "How are you")], true, "", "</s>");
        Assert.StartsWith(before, after);
        string delta = after[before.Length..];
        if (before.EndsWith('\n'))
            delta = "\n" + delta;
        Assert.Equal(expected, delta);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("{{ messages }} some template no rule knows")]
    public void Detect_UnknownOrMissing_IsPlain(string? template)
    {
        Assert.Equal(ChatTemplateKind.Plain, ChatTemplate.Detect(template).Kind);
        Assert.False(ChatTemplate.IsRecognised(template));
    }

    [Theory]
    // Synthetic templates for rules no upstream test vector covers; markers as in llm_chat_detect_template.
    [InlineData("{{'<|user|>\n' + content + '<|endoftext|>'}}", ChatTemplateKind.Zephyr)]
    [InlineData("{{'<|user|>\n' + content + '</s>'}}{{'<|assistant|>\n'}}", ChatTemplateKind.Falcon3)]
    [InlineData("{{'<|user|>'}}{{'<|assistant|>'}}", ChatTemplateKind.GlmEdge)]
    [InlineData("{% for m in messages %}<｜User｜>{{m}}<｜Assistant｜>{{m}}<｜end▁of▁sentence｜>{% endfor %}", ChatTemplateKind.DeepSeek3)]
    [InlineData("[|system|]{{c}}[|endofturn|][|user|]{{c}}[|assistant|]", ChatTemplateKind.Exaone3)]
    [InlineData("rwkv-world", ChatTemplateKind.RwkvWorld)]
    [InlineData("{{ '<|im_start|>' }}[INST]", ChatTemplateKind.ChatML)]           // ChatML's marker is tested first
    [InlineData("<|assistant|><|end|><|user|></s>", ChatTemplateKind.Phi3)]       // Phi-3 before Falcon 3
    [InlineData("{{ '[INST]' }}<<SYS>>", ChatTemplateKind.Llama2Sys)]
    [InlineData("mistral-something", ChatTemplateKind.Llama2)]                    // llama.cpp: a template starting with "mistral"
    public void Detect_AppliesLlamaCppRulesInOrder(string template, ChatTemplateKind expected)
    {
        Assert.Equal(expected, ChatTemplate.Detect(template).Kind);
    }

    [Fact]
    public void EveryKind_HasAName_ThatDetectsBackToIt_AndStopStrings()
    {
        foreach (var kind in Enum.GetValues<ChatTemplateKind>())
        {
            var template = ChatTemplate.For(kind);
            Assert.Equal(kind, template.Kind);
            Assert.Equal(kind, ChatTemplate.Detect(template.Name).Kind);
            Assert.NotEmpty(template.DefaultStopStrings);
            Assert.All(template.DefaultStopStrings, s => Assert.False(string.IsNullOrEmpty(s)));
        }
        Assert.Contains("<|im_end|>", ChatTemplate.For(ChatTemplateKind.ChatML).DefaultStopStrings);
        Assert.Contains("<|eot_id|>", ChatTemplate.For(ChatTemplateKind.Llama3).DefaultStopStrings);
        Assert.Contains("\nUser:", ChatTemplate.For(ChatTemplateKind.Plain).DefaultStopStrings);
    }

    [Fact]
    public void Render_WithoutGenerationPrompt_OmitsTheAssistantCue()
    {
        ChatMessage[] chat = [new("user", "Hi")];
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n", ChatTemplate.For(ChatTemplateKind.ChatML).Render(chat, false, "", ""));
        Assert.Equal("User: Hi\n", ChatTemplate.For(ChatTemplateKind.Plain).Render(chat, false, "", ""));
        Assert.Equal("User: Hi\nAssistant:", ChatTemplate.For(ChatTemplateKind.Plain).Render(chat, true, "", ""));
    }

    [Fact]
    public void Render_UsesCallerBosAndEosWhereLlamaCppWritesTheSentencePieceOnes()
    {
        ChatMessage[] chat = [new("user", "a"), new("assistant", "b"), new("user", "c")];
        Assert.Equal("[INST] a [/INST]b<EOS>[INST] c [/INST]", ChatTemplate.For(ChatTemplateKind.Llama2).Render(chat, true, "<BOS>", "<EOS>"));
        Assert.Equal("[INST] a [/INST]b<EOS><BOS>[INST] c [/INST]", ChatTemplate.For(ChatTemplateKind.Llama2SysBos).Render(chat, true, "<BOS>", "<EOS>"));
    }

    [Fact]
    public void Render_TrimsOnlyCWhitespace()
    {
        // llama.cpp trims with isspace in the C locale: a no-break space is content.
        ChatMessage[] chat = [new("user", "\u00A0 hi \t\r\n\v\f")];
        Assert.Equal("<|start_header_id|>user<|end_header_id|>\n\n\u00A0 hi<|eot_id|>",
            ChatTemplate.For(ChatTemplateKind.Llama3).Render(chat, false, "", ""));
    }

    [Fact]
    public void Render_RejectsUnknownRolesAndNulls()
    {
        var template = ChatTemplate.For(ChatTemplateKind.ChatML);
        var e = Assert.Throws<ArgumentException>(() => template.Render([new("user", "x"), new("tool", "y")], true, "", ""));
        Assert.Contains("'tool'", e.Message);
        Assert.Throws<ArgumentException>(() => template.Render([new("User", "x")], true, "", ""));
        Assert.Throws<ArgumentException>(() => template.Render([new("user", null!)], true, "", ""));
        Assert.Throws<ArgumentException>(() => template.Render([null!], true, "", ""));
        Assert.Throws<ArgumentNullException>(() => template.Render(null!, true, "", ""));
        Assert.Throws<ArgumentNullException>(() => template.Render([], true, null!, ""));
        Assert.Throws<ArgumentOutOfRangeException>(() => ChatTemplate.For((ChatTemplateKind)999));
    }
}
