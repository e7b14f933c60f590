namespace Kiln.Models.Llama;

/// <summary>Element type of the attention key/value cache. F16 is llama.cpp's default and Kiln's.</summary>
public enum KvCacheType
{
    F16,
    F32,
}
