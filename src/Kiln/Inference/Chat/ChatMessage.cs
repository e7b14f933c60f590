namespace Kiln.Inference.Chat;

/// <summary>One turn of a conversation. <see cref="Role"/> is "system", "user" or "assistant".</summary>
public sealed record ChatMessage(string Role, string Content)
{
    public const string System = "system";
    public const string User = "user";
    public const string Assistant = "assistant";
}
