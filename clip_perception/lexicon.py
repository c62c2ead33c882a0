"""Word lists and phrase tables of the command grammar (data only; no parsing here).

Used by :mod:`clip_perception.utterance` (cleaning, fillers, clauses), :mod:`clip_perception.phrase`
(object phrases) and :mod:`clip_perception.command` (intents).  Phrase tables are keyed by token
tuples (case-folded words); the parsers match them longest-first through a first-word index, so a
lookup costs O(entries that start with that word).  The lists are hand-made from how people phrase
commands to a robot arm and from speech-to-text output (Whisper); they are not a closed list of
the objects that can be found (CLIP grounds any noun).
"""

from __future__ import annotations

#: Characters of the input that are read at all (the rest is ignored, with a note).
MAX_INPUT_CHARS = 10_000
#: Characters of the cleaned text that are parsed (the rest is ignored, with a note).
MAX_COMMAND_CHARS = 1_000
#: Commands kept from one utterance ("A and then B and then ...").
MAX_COMMANDS = 10

DEFAULT_ACTION = "find"
#: Action of the pick part of a pick-and-place command ("put the apple in the bowl").
PLACE_ACTION = "place"

#: Spoken action phrase (token tuple) -> canonical action.  Longest match wins.
ACTIONS: dict[tuple[str, ...], str] = {
    ("pick", "up"): "pick up", ("pick",): "pick up", ("pickup",): "pick up", ("lift",): "pick up",
    ("lift", "up"): "pick up", ("grasp",): "pick up",
    ("grab",): "grab", ("take", "hold", "of"): "grab", ("hold",): "grab",
    ("take",): "take",
    ("get",): "get", ("go", "get"): "get", ("fetch",): "get", ("go", "fetch"): "get", ("retrieve",): "get",
    ("hand", "me"): "hand me", ("hand",): "hand me", ("pass", "me"): "hand me", ("pass",): "hand me",
    ("give", "me"): "give me", ("give",): "give me",
    ("bring", "me"): "bring me", ("bring",): "bring me",
    ("point", "at"): "point at", ("point", "to"): "point at", ("point", "towards"): "point at",
    ("point", "toward"): "point at", ("point",): "point at",
    ("find",): "find", ("locate",): "find", ("search", "for"): "find", ("look", "for"): "find",
    ("where", "is"): "find", ("where's",): "find", ("wheres",): "find", ("where", "are"): "find",
    ("where",): "find", ("detect",): "find", ("identify",): "find", ("spot",): "find", ("see",): "find",
    ("is", "there"): "find", ("are", "there"): "find", ("do", "you", "see"): "find",
    ("what", "is"): "find", ("what's",): "find", ("whats",): "find",
    ("look", "at"): "look at", ("focus", "on"): "look at",
    ("show", "me"): "show me", ("show",): "show me",
    ("touch",): "touch", ("tap",): "touch",
    ("push",): "push", ("nudge",): "push", ("shove",): "push",
    ("move", "to"): "move to", ("move", "towards"): "move to", ("move", "toward"): "move to",
    ("approach",): "move to",
    ("go", "to"): "go to", ("go", "over", "to"): "go to", ("go", "towards"): "go to", ("go", "toward"): "go to",
    ("drive", "to"): "go to", ("navigate", "to"): "go to", ("head", "to"): "go to",
    ("drop",): "drop", ("put", "down"): "drop", ("release",): "drop", ("let", "go", "of"): "drop",
}

#: Removed wherever they occur as whole words.
FILLER_WORDS = frozenset({
    "um", "umm", "ummm", "uhm", "uh", "uhh", "uhhh", "er", "err", "erm", "hmm", "hmmm", "hm", "mm", "mmm",
    "ah", "ahh", "eh", "kinda", "sorta", "please", "pls", "plz", "kindly", "just", "basically", "actually", "maybe",
})

#: Removed wherever they occur (token tuples, longest first).
FILLER_PHRASES: tuple[tuple[str, ...], ...] = tuple(sorted({
    ("you", "know"), ("i", "mean"), ("could", "you"), ("can", "you"), ("would", "you"), ("will", "you"),
    ("i", "want", "you", "to"), ("i'd", "like", "you", "to"), ("i", "would", "like", "you", "to"),
    ("i", "need", "you", "to"), ("go", "ahead", "and"), ("let's",), ("i", "want"), ("i", "need"),
    ("i'd", "like"), ("i", "would", "like"), ("i", "wanna"), ("do", "you", "mind"), ("would", "you", "mind"),
    ("be", "so", "kind", "as", "to"), ("if", "you", "can"), ("if", "you", "could"), ("i", "think"),
    ("i", "guess"), ("i", "suppose"), ("kind", "of"), ("sort", "of"),
}, key=lambda t: -len(t)))

#: Dropped at the start of a clause (repeatedly).
LEADING_MARKERS = frozenset({
    "so", "well", "okay", "ok", "okey", "alright", "now", "and", "also", "then", "hey", "hi", "hello", "yeah",
    "yes", "oh", "right", "next", "first", "firstly", "finally", "lastly",
})
#: Leading markers dropped only when a comma or an action follows ("first, pick up", not "first cup").
GUARDED_MARKERS = frozenset({"right", "next", "first", "firstly", "finally", "lastly"})

#: Wake words (robot's name) removed at the start of a clause or between commas / at the end after a comma.
WAKE_WORDS = frozenset({"robot"})

#: Dropped at the end of a clause (token tuples, longest first).
TRAILING_PHRASES: tuple[tuple[str, ...], ...] = tuple(sorted({
    ("for", "me"), ("to", "me"), ("here",), ("over", "here"), ("over", "there"), ("there",), ("now",),
    ("right", "now"), ("thanks",), ("thank", "you"), ("okay",), ("ok",), ("for", "us"), ("to", "us"),
}, key=lambda t: -len(t)))

#: Whole utterances / clauses that speech-to-text produces on silence or that are only politeness.
HALLUCINATIONS = frozenset({
    "thank you", "thank you very much", "thanks", "thanks a lot", "thank you so much", "thanks for watching",
    "thank you for watching", "thanks for watching and see you next time",
    "thank you for watching and see you next time",
    "please subscribe", "subscribe", "like and subscribe", "you", "bye", "bye bye", "goodbye", "thank you bye",
    "see you", "see you next time", "the end", "i'm sorry", "sorry", "cheers",
    "subtitles by the amara org community", "transcription by castingwords", "music", "applause", "silence",
    # conversational single words: no object
    "yes", "no", "yeah", "yep", "nope", "sure", "okay", "ok", "alright", "hello", "hi", "hey", "what", "huh",
    "right", "good", "great", "cool", "nice", "done",
})

#: Control words: not an object to look for (reported as no_command so the caller can react to them).
CONTROL_PHRASES = frozenset({
    "stop", "cancel", "wait", "pause", "halt", "abort", "reset", "never mind", "nevermind", "hold on",
    "forget it", "forget about it", "stop it", "stop that", "that's all", "thats all", "nothing",
})

#: Determiners dropped from object phrases.
ARTICLES = frozenset({"the", "a", "an", "that", "this", "my", "these", "those", "your", "our", "some", "any"})

#: Copulas / participles dropped from object phrases ("the cup that is sitting on the left").
NOISE_IN_OBJECT = frozenset({
    "is", "are", "which", "who", "that's", "thats", "sitting", "lying", "located", "placed", "standing",
    "resting", "positioned", "being", "colored", "coloured", "color", "colour", "very", "really",
})

#: Colour words -> canonical basic colour term (same names as ``colors.COLOR_NAMES``).
COLOR_WORDS: dict[str, str] = {
    **{c: c for c in ("red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black", "white",
                      "grey")},
    "gray": "grey", "violet": "purple", "magenta": "purple", "crimson": "red", "maroon": "red", "scarlet": "red",
    "cyan": "blue", "navy": "blue", "turquoise": "blue", "teal": "blue", "silver": "grey", "golden": "yellow",
    "gold": "yellow", "reddish": "red", "greenish": "green", "bluish": "blue", "blueish": "blue",
    "yellowish": "yellow", "orangish": "orange", "purplish": "purple", "pinkish": "pink", "brownish": "brown",
    "blackish": "black", "whitish": "white", "greyish": "grey", "grayish": "grey",
}
#: Shade modifiers kept as attributes ("light blue" -> colours [blue], attributes [light]).
SHADE_WORDS = frozenset({"light", "dark", "pale", "bright", "deep"})
#: Material words -> canonical attribute.
MATERIAL_WORDS: dict[str, str] = {
    "wooden": "wooden", "wood": "wooden", "metal": "metal", "metallic": "metal", "steel": "metal",
    "plastic": "plastic", "glass": "glass", "paper": "paper", "ceramic": "ceramic", "cardboard": "cardboard",
    "rubber": "rubber", "fabric": "fabric", "cloth": "fabric",
}
#: Size words kept as attributes.
SIZE_WORDS = frozenset({"big", "large", "small", "little", "tiny", "tall", "short", "huge", "giant", "mini",
                        "medium", "long", "thin", "wide"})

#: Superlatives / position words -> spatial kind.
SUPERLATIVES: dict[str, str] = {
    "leftmost": "left", "rightmost": "right", "topmost": "top", "uppermost": "top", "highest": "top",
    "bottommost": "bottom", "lowermost": "bottom", "lowest": "bottom", "middlemost": "middle",
    "central": "middle", "nearest": "nearest", "closest": "nearest", "farthest": "farthest",
    "furthest": "farthest", "largest": "largest", "biggest": "largest", "smallest": "smallest",
    "tiniest": "smallest",
    # comparatives ("the bigger one" of the candidates): the same order as the superlative
    "bigger": "largest", "larger": "largest", "smaller": "smallest", "littler": "smallest", "closer": "nearest",
    "nearer": "nearest", "farther": "farthest", "further": "farthest", "higher": "top", "lower": "bottom",
}
#: Direction words usable as "on the X" / "the X cup" -> spatial kind.
DIRECTIONS: dict[str, str] = {
    "left": "left", "right": "right", "top": "top", "bottom": "bottom", "middle": "middle", "center": "middle",
    "centre": "middle", "front": "nearest", "back": "farthest",
}
DIR_TAIL = frozenset({"side", "hand", "corner", "edge", "end", "part", "half"})
DIR_PREPS = frozenset({"on", "to", "at", "in", "from", "towards", "toward"})
INTENSIFIERS = frozenset({"far", "very", "most"})
#: Words meaning the robot / the speaker ("the cup closest to me" -> nearest).
SELF_WORDS = frozenset({"me", "you", "us", "robot", "camera", "yourself", "myself"})
ORDINALS: dict[str, int] = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "6th": 6, "7th": 7, "8th": 8,
    "9th": 9, "10th": 10,
}
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top", "nearest": "farthest",
             "farthest": "nearest", "largest": "smallest", "smallest": "largest", "middle": "middle"}
SPATIAL_KINDS = ("left", "right", "top", "bottom", "middle", "nearest", "farthest", "largest", "smallest")

#: Relation phrase (token tuple, articles already dropped) -> canonical relation.
RELATIONS: dict[tuple[str, ...], str] = {}
for _side in ("left", "right"):
    for _pre in ((), ("to",), ("on",), ("at",)):
        for _mid in ((), ("side",), ("hand", "side")):
            RELATIONS[_pre + (_side,) + _mid + ("of",)] = f"{_side} of"
RELATIONS.update({
    ("next", "to"): "next to", ("beside",): "next to", ("besides",): "next to", ("alongside",): "next to",
    ("adjacent", "to"): "next to", ("by",): "next to",
    ("near",): "near", ("near", "to"): "near", ("close", "to"): "near", ("closest", "to"): "near",
    ("nearest", "to"): "near", ("nearby",): "near", ("closer", "to"): "near",
    ("on", "top", "of"): "on", ("on",): "on", ("onto",): "on", ("atop",): "on", ("upon",): "on",
    ("in",): "in", ("inside",): "in", ("inside", "of"): "in", ("within",): "in", ("into",): "in",
    ("in", "front", "of"): "in front of", ("infront", "of"): "in front of", ("front", "of"): "in front of",
    ("behind",): "behind", ("in", "back", "of"): "behind", ("at", "back", "of"): "behind",
    ("above",): "above", ("over",): "above",
    ("below",): "below", ("under",): "below", ("underneath",): "below", ("beneath",): "below",
})
#: Canonical relation values (``"in"`` is resolved like ``"on"`` by the ranking).
RELATION_KINDS = ("next to", "near", "left of", "right of", "on", "in", "in front of", "behind", "above", "below")

#: Pronouns / placeholders that name no object by themselves.
PRONOUNS = frozenset({"it", "them", "one", "ones", "something", "anything", "everything", "stuff", "thing",
                      "things", "object", "objects", "item", "items"})
PLACEHOLDER_NOUNS = frozenset({"one", "ones", "thing", "things", "object", "objects", "item", "items"})

#: Common object nouns (English vocabulary check, not a closed list of what can be found).
OBJECT_NOUNS = frozenset("""
ball cup mug bottle can box block cube plate bowl glass jar lid pot pan kettle spoon fork knife chopsticks
laptop phone keyboard mouse remote book notebook pen pencil marker scissors stapler tape toy doll car truck
apple banana orange lemon lime pear peach plum grape strawberry tomato potato carrot onion cucumber pepper
bread sandwich cake donut pizza cookie snack chips cereal sponge towel cloth brush soap bucket basket bag
backpack shoe sock hat cap shirt jacket umbrella chair table desk shelf drawer cabinet door window wall floor
lamp light clock vase plant flower pillow blanket bed couch sofa tv monitor screen camera bin trash can
toothbrush hairdryer teddy bear bowl tray container packet package carton tin wrench hammer screwdriver
drill pliers clamp bolt nut screw tool cone cylinder sphere pyramid brick lego puzzle cards dice can
mustard ketchup sugar coffee tea milk juice water soda beer wine cola sauce salt jug pitcher thermos
tumbler flask sink fridge microwave oven toaster stove robot person hand object thing item stuff
headphones cable charger battery wallet keys key glasses sunglasses watch ring bracelet necklace
frisbee skateboard racket bat glove kite bicycle bike motorcycle bus train boat airplane bird cat dog
horse sheep cow elephant zebra giraffe bench sign hydrant suitcase tie skis snowboard broccoli hot dog
""".split())

#: English function/structure words (for the "recognisable English" check).
ENGLISH_FUNCTION = frozenset("""
the a an that this my these those your our some any and or of to on in at from for with by near next
beside behind above below under over up down it them one is are there where what which who me you us
i we he she they can could would will should do does did please pick grab take get hand give bring point
find locate look show touch push move go left right top bottom middle center centre front back side
near nearest closest farthest furthest largest biggest smallest leftmost rightmost then after not no
yes ok okay hey hello hi so well now just like also here thanks thank first second third last
""".split())

#: Frequent function words / colour words of other languages written in Latin script.
FOREIGN_WORDS = frozenset("""
el la los las le les der die das den dem und ein eine einen il lo gli una uno por para bitte favor recoge
coge toma prends nimm rojo roja azul verde rouge bleu vert rot blau grün gelb amarillo naranja negro
negra blanco blanca noir noire blanc blanche schwarz weiß weiss de du des het een och und auf und mit
pelota balle ball taza tasse vaso botella bouteille flasche nehmen tome pegue pega agarra donde où wo
""".split()) - {"ball"}


# --------------------------------------------------------------------------------------
# Pick-and-place, stop, corrections, pronouns, locations
# --------------------------------------------------------------------------------------

#: Verbs of a pick-and-place command ("put X in Y"); "down" may follow the verb or the object.
PLACE_VERBS = frozenset({
    ("put",), ("put", "down"), ("place",), ("place", "down"), ("move",), ("drop",), ("drop", "off"),
    ("set",), ("set", "down"), ("stack",), ("throw",), ("toss",), ("lay",), ("lay", "down"), ("put", "back"),
})

#: Canonical destination relations (``ParsedCommand.destination_relation``).
DESTINATION_RELATION_KINDS = ("in", "on", "next_to", "left_of", "right_of", "in_front_of", "behind")

#: Destination relation phrase -> canonical relation.  Articles ("the", "a") between the words
#: are skipped when matching ("to the left of" matches ("to", "left", "of")).
DESTINATION_RELATIONS: dict[tuple[str, ...], str] = {}
for _side in ("left", "right"):
    for _pre in ((), ("to",), ("on",), ("at",)):
        for _mid in ((), ("side",), ("hand", "side")):
            DESTINATION_RELATIONS[_pre + (_side,) + _mid + ("of",)] = f"{_side}_of"
DESTINATION_RELATIONS.update({
    ("in",): "in", ("into",): "in", ("inside",): "in", ("inside", "of"): "in", ("in", "to"): "in",
    ("within",): "in",
    ("on",): "on", ("onto",): "on", ("on", "to"): "on", ("on", "top", "of"): "on", ("atop",): "on",
    ("upon",): "on",
    ("next", "to"): "next_to", ("beside",): "next_to", ("besides",): "next_to", ("by",): "next_to",
    ("near",): "next_to", ("near", "to"): "next_to", ("alongside",): "next_to", ("close", "to"): "next_to",
    ("adjacent", "to"): "next_to", ("right", "next", "to"): "next_to", ("right", "beside"): "next_to",
    ("in", "front", "of"): "in_front_of", ("infront", "of"): "in_front_of", ("to", "front", "of"): "in_front_of",
    ("behind",): "behind", ("in", "back", "of"): "behind", ("at", "back", "of"): "behind",
    ("to", "back", "of"): "behind", ("right", "behind"): "behind",
})
#: Place relations this package does not compute a place point for (reported, never guessed).
UNSUPPORTED_PLACE_RELATIONS: dict[tuple[str, ...], str] = {
    ("under",): "under", ("underneath",): "under", ("below",): "below", ("beneath",): "under",
    ("above",): "above", ("over",): "above", ("between",): "between", ("around",): "around",
    ("to",): "to", ("towards",): "to", ("toward",): "to",
}

#: Whole clauses that stop the current command (after fillers and politeness are removed).
STOP_PHRASES = frozenset({
    "stop", "cancel", "abort", "halt", "never mind", "nevermind", "forget it", "forget about it", "forget that",
    "stop looking", "stop searching", "stop it", "stop that", "stop everything", "stop moving", "stop now",
    "that's all", "thats all", "that is all", "cancel that", "cancel it", "cancel everything", "abort that",
    "abort it", "quit", "enough", "that's enough", "thats enough", "that will be all", "that'll be all",
    "stop the search", "cancel the search", "cancel the command", "all done", "we're done", "we are done",
    "emergency stop", "full stop", "freeze",
})
#: Clause starts that stop ("stop looking for the ball", "cancel the last command").
STOP_PREFIXES: tuple[tuple[str, ...], ...] = (
    ("stop", "looking"), ("stop", "searching"), ("stop", "trying"), ("forget", "about"), ("cancel", "the"),
    ("cancel", "that"), ("abort", "the"), ("never", "mind"), ("nevermind",),
)

#: Clause-initial phrases that reject the current target ("no, ...", "not that one").
NEGATION_PHRASES: tuple[tuple[str, ...], ...] = tuple(sorted({
    ("no",), ("nope",), ("nah",), ("not", "that", "one"), ("not", "this", "one"), ("not", "that"),
    ("not", "this"), ("not", "it"), ("not", "the", "one"), ("wrong", "one"), ("the", "wrong", "one"),
    ("that's", "wrong"), ("thats", "wrong"), ("that", "is", "wrong"), ("that's", "not", "it"),
    ("thats", "not", "it"), ("that's", "the", "wrong", "one"), ("that", "is", "not", "it"),
    ("not", "that", "one", "either"), ("wrong",), ("incorrect",), ("that's", "not", "the", "one"),
    ("that's", "not", "right"), ("not", "quite"),
}, key=lambda t: -len(t)))
#: Negations that by themselves ask for another candidate ("not that one" = "the other one").
EXCLUDING_NEGATIONS = frozenset(p for p in NEGATION_PHRASES if p not in {("no",), ("nope",), ("nah",),
                                                                        ("not", "quite")})
#: Words that ask for a different candidate than the current target ("the other one").
OTHER_WORDS = frozenset({"other", "another", "different", "else"})
#: Utterance-initial markers of a new command that replaces the current one ("actually the green cup").
NEW_MARKERS: tuple[tuple[str, ...], ...] = tuple(sorted({
    ("actually",), ("i", "meant"), ("i", "mean"), ("i", "said"), ("sorry",), ("oops",), ("make", "that"),
    ("rather",), ("i", "wanted"), ("what", "i", "meant", "was"), ("change", "that", "to"),
}, key=lambda t: -len(t)))

#: Object phrases that mean the current target ("put it in the box", "pick that one up").
CURRENT_TARGET_PHRASES = frozenset({
    ("it",), ("that",), ("this",), ("that", "one"), ("this", "one"), ("them",), ("those",), ("these",),
    ("the", "same", "one"), ("same", "one"), ("that", "thing"), ("this", "thing"),
})

#: Support surfaces and containers named after a preposition as a location ("on the top shelf"),
#: not as part of the object's noun.
LOCATION_NOUNS = frozenset({
    "shelf", "shelves", "drawer", "rack", "counter", "countertop", "table", "desk", "tray", "cabinet", "cupboard",
    "ledge", "row", "level", "tier", "bench", "floor", "cart", "stand", "windowsill", "sill", "bin",
})

#: Every word the grammar knows (for the "recognisable English" check).
ENGLISH_VOCAB = frozenset(
    {w for key in ACTIONS for w in key}
    | FILLER_WORDS
    | {w for p in FILLER_PHRASES for w in p}
    | LEADING_MARKERS | WAKE_WORDS | {w for p in CONTROL_PHRASES for w in p.split()}
    | ARTICLES | NOISE_IN_OBJECT | set(COLOR_WORDS) | SHADE_WORDS
    | set(MATERIAL_WORDS) | SIZE_WORDS | set(SUPERLATIVES) | set(DIRECTIONS) | SELF_WORDS | set(ORDINALS)
    | {w for key in RELATIONS for w in key} | PRONOUNS | OBJECT_NOUNS | ENGLISH_FUNCTION
    | {w for key in PLACE_VERBS for w in key} | {w for key in DESTINATION_RELATIONS for w in key}
    | {w for key in UNSUPPORTED_PLACE_RELATIONS for w in key} | {w for p in STOP_PHRASES for w in p.split()}
    | {w for key in NEGATION_PHRASES for w in key} | OTHER_WORDS | {w for key in NEW_MARKERS for w in key}
    | LOCATION_NOUNS
)
