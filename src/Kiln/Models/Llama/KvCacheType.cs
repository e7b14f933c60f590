namespace Kiln.Models.Llama;

/// <summary>Element type of the attention key/value cache. F16 is llama.cpp's default and Kiln's.</summary>
public enum KvCacheType
{
    F16,
    F32,

    /// <summary>ggml Q8_0 blocks of 32 (a little over half of F16's memory); the head size must be a multiple of 32.</summary>
    Q8_0,
}
