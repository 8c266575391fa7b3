using System.Text;
using System.Text.Json.Nodes;
using RealtimeAssistant.Model.Chat;

namespace RealtimeAssistant.Tests.Model.Chat;

/// <summary>
/// A chat template is untrusted input (it ships with a downloaded model): mangled real templates
/// and random token soup must render or fail with a UserError, never throw anything else or hang.
/// </summary>
public class JinjaFuzzTests
{
    static readonly string[] Pool =
    {
        "{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", "{%+", "+%}", "(", ")", "[", "]", "{", "}", "'", "\"", "\\",
        "|", ".", ",", ":", "=", "==", "~", "+", "-", "*", "**", "/", "//", "%", " if ", " else ", " for ", " in ", " not ", " is ",
        " and ", " or ", "endfor", "endif", "endmacro", "endset", "set ", "macro ", "call ", "raw", "endraw", "loop", "messages",
        "namespace(", "range(", "tojson", "length", "selectattr(", "map(", "caller()", "\n", " ", "0", "1e5", "0x", "-1", "é",
        "🙂", "none", "true", "x", "ns.x", "[::-1]", "[1:", "'\\x", "'\\u12", "\r\n", "varargs", "kwargs", "break", "continue",
    };

    static readonly JsonArray[] Conversations =
    {
        (JsonArray)JsonNode.Parse("""[{"role":"system","content":"sys"},{"role":"user","content":"hi é 🙂"},{"role":"assistant","content":"yo"}]""")!,
        (JsonArray)JsonNode.Parse("""[{"role":"user","content":[{"type":"image"},{"type":"text","text":"what?"},{"type":"video"}]}]""")!,
    };

    static IEnumerable<string> Seeds()
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "chat", "templates");
        foreach (var f in Directory.GetFiles(dir, "*.jinja").OrderBy(f => f, StringComparer.Ordinal)) yield return File.ReadAllText(f);
    }

    static string Mutate(string s, Random rng)
    {
        var sb = new StringBuilder(s);
        int edits = 1 + rng.Next(4);
        for (int e = 0; e < edits; e++)
        {
            int at = sb.Length == 0 ? 0 : rng.Next(sb.Length);
            switch (rng.Next(5))
            {
                case 0: sb.Remove(at, Math.Min(sb.Length - at, 1 + rng.Next(12))); break;
                case 1: sb.Insert(at, Pool[rng.Next(Pool.Length)]); break;
                case 2:
                {
                    int len = Math.Min(sb.Length - at, 1 + rng.Next(40));
                    sb.Insert(rng.Next(sb.Length + 1), sb.ToString(at, len));
                    break;
                }
                case 3: if (sb.Length > 1) { int b = rng.Next(sb.Length); (sb[at], sb[b]) = (sb[b], sb[at]); } break;
                default: sb.Length = at; break;
            }
        }
        return sb.ToString();
    }

    static string Soup(Random rng) =>
        string.Concat(Enumerable.Range(0, 1 + rng.Next(30)).Select(_ => Pool[rng.Next(Pool.Length)]));

    static void RenderOrUserError(string text, int seed)
    {
        try
        {
            var chat = ChatTemplate.FromText(text, "fuzz.jinja");
            chat.Clock = () => new DateTime(2024, 1, 2);
            foreach (var conv in Conversations)
                foreach (var agp in new[] { false, true })
                {
                    try { chat.Render(conv.DeepClone().AsArray(), agp); }
                    catch (UserError) { }
                }
        }
        catch (UserError) { }
        catch (Exception e)
        {
            Assert.Fail($"case {seed}: {e.GetType().Name}: {e.Message}\n--- template ---\n{text}");
        }
    }

    [Fact(Timeout = 300_000)]
    public async Task MangledTemplatesFailCleanly()
    {
        await Task.Run(() =>
        {
            var seeds = Seeds().ToList();
            var rng = new Random(20);
            for (int i = 0; i < 3000; i++)
                RenderOrUserError(Mutate(seeds[i % seeds.Count], rng), i);
        }, TestContext.Current.CancellationToken);
    }

    [Fact(Timeout = 300_000)]
    public async Task TokenSoupFailsCleanly()
    {
        await Task.Run(() =>
        {
            var rng = new Random(7);
            for (int i = 0; i < 3000; i++)
            {
                var body = Soup(rng);
                RenderOrUserError(body, i);
                RenderOrUserError("{{ " + body + " }}", i);
                RenderOrUserError("{% set x = " + body + " %}{{ x }}", i);
            }
        }, TestContext.Current.CancellationToken);
    }
}
