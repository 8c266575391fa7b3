using System.Text.Json;
using System.Text.Json.Nodes;

namespace RealtimeAssistant.Model.Checkpoint;

/// <summary>Reads a model folder's JSON files (config, tokenizer, preprocessor): a UserError naming the file for anything that is not a JSON document.</summary>
public static class JsonFile
{
    /// <summary>Larger than any real config or tokenizer (Qwen2's tokenizer.json is 7 MB).</summary>
    public const long MaxBytes = 256L << 20;

    public static JsonNode Read(string path, string what)
    {
        var length = new FileInfo(path).Length;
        if (length > MaxBytes) throw new UserError($"{path} is {length} bytes, implausibly large for a {what}");
        try
        {
            // Invalid UTF-8 becomes U+FFFD here; the JSON reader then judges the text.
            return JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { MaxDepth = 256, AllowDuplicateProperties = false })
                ?? throw new UserError($"{path} holds null, not a {what}");
        }
        catch (JsonException e) { throw new UserError($"{path} is not valid JSON: {e.Message}"); }
    }
}
