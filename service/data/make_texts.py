"""Generate burstbench's bundled, offline sentiment text dataset.

Output: ``service/data/sentiment_texts.csv`` with columns ``id,text,label``,
1,500 rows, exactly 500 per label (``negative``, ``neutral``, ``positive``),
shuffled so the labels are interleaved.

Recipe
------
Every text is synthetic and was written for this project: hand-written English
fragments (the constants below) are combined by a seeded generator.

* SUBJECTS: things people review or post about (products, apps, places,
  meals, films and shows, deliveries, customer support, ...), each tagged with
  a kind so that it gets matching ASPECTS (battery life, plot, staff, ...).
* Evaluative predicates, one list per label: POSITIVE_PREDICATES,
  NEGATIVE_PREDICATES, NEUTRAL_PREDICATES (factual statements) plus
  NEUTRAL_MIXED_PREDICATES (balanced, neither-good-nor-bad remarks).
* Follow-up clauses, adjectives, intensifiers and endings per label; neutral
  questions; label-free openers, time phrases and connectors.
* Sentence templates (see TEMPLATE_WEIGHTS) from 3-word fragments up to
  3-4 clause posts of about 60 words, and, for LONG_PER_LABEL texts per label,
  multi-sentence rants of 120-200 words so that truncation paths get exercised.

Neutral texts are built only from neutral fragments: factual statements,
questions and explicitly balanced (one good aspect, one bad aspect) remarks.

Texts are deduplicated; generation continues until each label has
ROWS_PER_LABEL unique texts. A single ``random.Random(SEED)`` drives every
choice and nothing depends on time, the environment or set/dict hash order,
so the CSV is byte-identical on every run.

Usage: ``python service/data/make_texts.py``
"""

from __future__ import annotations

import csv
import random
import statistics
from pathlib import Path

SEED = 20261130
ROWS_PER_LABEL = 500
LONG_PER_LABEL = 10  # 30 of 1,500 texts (2%) are 120-200 word rants/essays
LONG_MIN_WORDS = 120
LONG_MAX_WORDS = 200
LABELS = ("negative", "neutral", "positive")
OUTPUT = Path(__file__).resolve().parent / "sentiment_texts.csv"

# --------------------------------------------------------------------------
# Subjects and their aspects
# --------------------------------------------------------------------------

SUBJECTS = (
    # products
    ("the new phone case", "product"),
    ("this pair of wireless earbuds", "product"),
    ("the standing desk I ordered", "product"),
    ("this coffee grinder", "product"),
    ("the robot vacuum", "product"),
    ("my new laptop", "product"),
    ("the electric kettle", "product"),
    ("this running jacket", "product"),
    ("the budget smartwatch", "product"),
    ("the air fryer", "product"),
    ("this mechanical keyboard", "product"),
    ("the baby monitor", "product"),
    ("the replacement charger", "product"),
    ("this office chair", "product"),
    # apps
    ("the banking app", "app"),
    ("the food delivery app", "app"),
    ("the latest update to the photo editor", "app"),
    ("this budgeting app", "app"),
    ("the airline's mobile app", "app"),
    ("the new version of the music app", "app"),
    ("the language learning app", "app"),
    ("the ride sharing app", "app"),
    # places
    ("the hotel near the station", "place"),
    ("the new gym on Main Street", "place"),
    ("the campsite by the lake", "place"),
    ("the downtown library branch", "place"),
    ("the airport lounge", "place"),
    ("the hair salon on the corner", "place"),
    ("the museum's new wing", "place"),
    # meals
    ("the pasta at the corner bistro", "food"),
    ("the breakfast burrito from the food truck", "food"),
    ("the vegan menu at that cafe", "food"),
    ("the pizza place on Elm Street", "food"),
    ("the ramen place downtown", "food"),
    ("the meal kit subscription", "food"),
    ("the bakery's sourdough", "food"),
    # films, shows, audio
    ("the new season of that detective show", "media"),
    ("the new thriller at the cinema", "media"),
    ("this audiobook", "media"),
    ("the sequel", "media"),
    ("the podcast everyone keeps sharing", "media"),
    ("the concert at the arena", "media"),
    ("the documentary about ocean life", "media"),
    # services
    ("customer support", "service"),
    ("the delivery", "service"),
    ("the moving company", "service"),
    ("the internet provider", "service"),
    ("the repair shop", "service"),
    ("the online checkout", "service"),
    ("the return process", "service"),
    ("the plumber we hired", "service"),
    ("the early train service", "service"),
)

ASPECTS = {
    "product": ("battery life", "build quality", "price", "packaging", "setup",
                "design", "instruction manual", "warranty"),
    "app": ("interface", "login process", "search feature",
            "notification settings", "loading speed", "latest update",
            "dark mode"),
    "place": ("staff", "location", "parking", "cleanliness", "opening hours",
              "noise level", "booking system"),
    "food": ("portion size", "taste", "price", "presentation", "wait time",
             "seasoning", "menu"),
    "media": ("plot", "acting", "soundtrack", "ending", "pacing", "dialogue",
              "running time"),
    "service": ("response time", "staff", "price", "communication",
                "tracking", "paperwork", "scheduling"),
}

# --------------------------------------------------------------------------
# Evaluative predicates (follow a subject, or "it")
# --------------------------------------------------------------------------

POSITIVE_PREDICATES = (
    "exceeded my expectations",
    "was worth every penny",
    "works exactly as advertised",
    "made my whole week better",
    "is the best I have tried so far",
    "turned out to be a great choice",
    "has been completely reliable",
    "was a pleasant surprise",
    "is easy to recommend",
    "did everything I hoped it would",
    "blew me away",
    "is genuinely impressive",
    "keeps getting better",
    "was smooth from start to finish",
    "has not let me down once",
    "felt like great value for the money",
    "was handled with real care",
    "put a smile on my face",
    "is a real pleasure every time",
    "got everything right",
    "was far better than the reviews suggested",
    "is exactly what I needed",
    "deserves all the praise it gets",
    "made a stressful day much easier",
    "was fast, friendly and painless",
    "is now my go-to",
    "won me over immediately",
    "was top notch",
    "held up really well",
    "is a huge improvement over the old one",
    "was an absolute delight",
    "left a great impression on the whole family",
    "is beautifully done",
    "beat every alternative I tried",
    "went above and beyond",
    "was sorted out in minutes",
    "felt premium without the premium price",
    "was well worth the wait",
    "impressed even my picky brother",
    "is honestly fantastic",
    "has been a game changer for me",
    "was spot on",
    "turned a bad day around",
    "is something I would happily pay for again",
    "keeps surprising me in the best way",
)

NEGATIVE_PREDICATES = (
    "was a complete waste of money",
    "let me down badly",
    "stopped working after two days",
    "is the worst I have tried",
    "was a total disappointment",
    "fell apart almost immediately",
    "took forever and still got it wrong",
    "is frustrating from start to finish",
    "made a simple thing really complicated",
    "was nothing like the description",
    "ruined my evening",
    "keeps getting worse",
    "is overpriced for what you get",
    "was a mess from the very start",
    "broke my trust completely",
    "felt cheap and poorly thought out",
    "was handled with zero care",
    "left me angry and out of pocket",
    "is a nightmare to deal with",
    "got almost everything wrong",
    "was far worse than the reviews suggested",
    "is exactly what I did not need",
    "does not deserve the hype",
    "turned a normal day into a headache",
    "was slow, rude and confusing",
    "is the last one I will ever try",
    "lost me as a customer",
    "was a bad joke",
    "wore out embarrassingly fast",
    "is a big step backwards from the old one",
    "was painful from beginning to end",
    "left a bad taste in my mouth",
    "is badly put together",
    "lost to every alternative I tried",
    "could not have cared less about me",
    "took three weeks to sort out",
    "felt like a scam",
    "was not worth the wait",
    "annoyed even my most patient friend",
    "is honestly terrible",
    "has been a constant source of stress",
    "was completely off",
    "made a bad day even worse",
    "is something I regret paying for",
    "failed at the one thing it is supposed to do",
)

# Factual, opinion-free statements.
NEUTRAL_PREDICATES = (
    "arrived on Tuesday as scheduled",
    "was recommended to me by a coworker",
    "came up in our group chat last week",
    "has been around for a few years now",
    "was the topic of a meeting at work today",
    "costs about the same as the alternatives",
    "gets mentioned a lot on this forum",
    "is available in most cities now",
    "changed its name at some point last year",
    "was updated over the weekend",
    "has a new version coming out next month",
    "is on my list to look into",
    "was the first option that came up in search",
    "is what my sister uses",
    "is similar to the one we had before",
    "was part of a bundle deal",
    "is what we ended up going with",
    "is being discussed in the local news",
    "comes in a few different versions",
    "was on sale earlier this week",
    "is covered in the latest issue of the magazine",
    "was mentioned in the newsletter this morning",
    "is run by a small team",
    "was used at the office for the first time today",
    "has its own page on the company website",
    "is listed under the home category",
    "replaced the older one we had",
    "requires an account to get started",
    "is scheduled for a review next quarter",
    "was paid for with a gift card",
    "is what most people in my building use",
    "was part of a survey I filled out",
    "has a waiting list at the moment",
    "is made by the same company as the last one",
    "was picked by my partner this time",
    "came with a printed receipt",
    "is the default option for new customers",
    "was shown in an advert before the video",
    "got a mention on the radio this morning",
    "is the one my manager suggested",
    "has separate pricing for students",
    "was moved to a different section of the site",
    "is one of several options in the area",
    "is still being tested by our team",
    "was the subject of a long thread on here",
)

# Balanced remarks: neither praise nor complaint.
NEUTRAL_MIXED_PREDICATES = (
    "does some things well and others not so well",
    "is fine for the price, nothing more and nothing less",
    "is neither great nor terrible",
    "has pros and cons like anything else",
    "is about what I expected",
    "is okay, I suppose, depending on what you need",
    "works for some people and not for others",
    "is a mixed bag",
    "is decent in some ways and lacking in others",
    "is average overall",
    "would suit some people more than others",
    "is not bad and not amazing either",
    "sits somewhere in the middle of the pack",
    "is pretty standard for this kind of thing",
    "has a few strengths and a few weaknesses",
)

# --------------------------------------------------------------------------
# Follow-up clauses (complete clauses, no subject needed)
# --------------------------------------------------------------------------

POSITIVE_FOLLOWUPS = (
    "I would buy it again without thinking",
    "I have already told three friends about it",
    "I cannot believe how good it is",
    "it made my life easier",
    "I am genuinely happy with it",
    "no complaints at all",
    "I will definitely be back",
    "it was worth the money",
    "the whole experience felt effortless",
    "I am really glad I gave it a chance",
    "it has earned a loyal customer",
    "everything just worked",
    "I keep thinking about how good it was",
    "it was a highlight of my month",
    "I would give it six stars if I could",
    "my expectations were low and it crushed them",
    "the team behind it clearly cares",
    "I have zero regrets",
    "it is the real deal",
    "I am properly impressed",
)

NEGATIVE_FOLLOWUPS = (
    "I want my money back",
    "I have warned all my friends about it",
    "I cannot believe how bad it is",
    "it made my life harder",
    "I am genuinely upset about it",
    "nothing but problems",
    "I will not be back",
    "it was not worth the money",
    "the whole experience was exhausting",
    "I regret giving it a chance",
    "they have lost a customer",
    "nothing worked properly",
    "I keep thinking about how bad it was",
    "it was a low point of my month",
    "I would give it zero stars if I could",
    "my expectations were low and it still missed them",
    "nobody behind it seems to care",
    "I have nothing but regrets",
    "it is a total rip-off",
    "I am fed up",
)

NEUTRAL_FOLLOWUPS = (
    "I will see how it goes",
    "I have not made up my mind yet",
    "more details to follow",
    "I am writing this down for reference",
    "it is the third one I have looked at",
    "I might compare it with a couple of others",
    "the receipt says it was bought on the fifth",
    "that is all I know so far",
    "my partner is the one who picked it",
    "we will use it again next week",
    "I have only had it for a day",
    "it is the standard option here",
    "I am still reading the terms",
    "I will post again after a month",
    "the price was the same as last year",
    "it depends on what you are looking for",
    "I am told the next version is similar",
    "others may have a different experience",
    "nothing else to report for now",
    "the instructions were in three languages",
)

# Neutral questions; "{s}" is a subject, "{a}" one of its aspects.
NEUTRAL_QUESTIONS = (
    "Does anyone know if {s} is still available?",
    "Has anyone here tried {s}?",
    "What do people think of {s}?",
    "Can someone explain how {s} compares with the others?",
    "Where can I find more details about {s}?",
    "Is {s} the same as the one from last year?",
    "Which version of {s} did everyone else get?",
    "Does {s} need an account to use?",
    "Did {s} change recently, or is that just the display?",
    "Anyone know when {s} gets updated next?",
    "Does anyone know whether the {a} of {s} changed this year?",
    "Is the {a} of {s} the same as before?",
    "How does the {a} of {s} work exactly?",
    "Who is the right person to ask about the {a} of {s}?",
)

# --------------------------------------------------------------------------
# Adjectives, intensifiers, endings, small shared pieces
# --------------------------------------------------------------------------

POSITIVE_ADJECTIVES = (
    "great", "excellent", "fantastic", "reliable", "solid", "impressive",
    "brilliant", "wonderful", "superb", "lovely", "outstanding", "well made",
    "smooth", "delightful", "perfect", "terrific", "good", "fun", "amazing",
    "generous",
)
NEGATIVE_ADJECTIVES = (
    "terrible", "awful", "unreliable", "flimsy", "disappointing", "useless",
    "dreadful", "horrible", "poor", "sloppy", "painful", "broken",
    "overpriced", "frustrating", "miserable", "pathetic", "shoddy", "clunky",
    "bad", "appalling",
)
# General-purpose adjectives that fit any aspect (price, plot, staff, ...).
POSITIVE_ASPECT_ADJECTIVES = (
    "great", "excellent", "fantastic", "impressive", "brilliant", "wonderful",
    "superb", "lovely", "outstanding", "good", "amazing", "terrific",
)
NEGATIVE_ASPECT_ADJECTIVES = (
    "terrible", "awful", "disappointing", "dreadful", "horrible", "poor",
    "bad", "appalling", "pathetic", "lousy",
)
# Mild adjectives for balanced neutral remarks ("the X is good but the Y is weak").
BALANCED_GOOD = ("good", "nice", "solid", "decent", "better than I thought")
BALANCED_BAD = ("weak", "not great", "a bit poor", "worse than I thought",
                "disappointing")
NEUTRAL_ADJECTIVES = (
    "average", "okay", "standard", "ordinary", "fine", "typical",
    "unremarkable", "normal", "as expected", "adequate", "acceptable",
    "middle of the road",
)

INTENSIFIERS = ("", "", "really", "very", "absolutely", "incredibly", "so",
                "truly", "seriously", "remarkably", "extremely", "genuinely")
NEUTRAL_QUALIFIERS = ("", "", "fairly", "pretty much", "more or less",
                      "broadly")

POSITIVE_ENDINGS = (
    "Would recommend.", "Five stars.", "Love it!", "Thanks so much!",
    "Highly recommended.", "Ten out of ten.", "Cannot wait to go back.",
    "Keep it up!", "A+.", "Best purchase this year.",
)
NEGATIVE_ENDINGS = (
    "Avoid.", "Never again.", "One star.", "Returning it.", "Stay away.",
    "Zero out of ten.", "Not impressed.", "Do better.", "Total letdown.",
    "Save your money.",
)
NEUTRAL_ENDINGS = (
    "That's all.", "Will update later.", "Just sharing.",
    "Make of that what you will.", "FYI.", "More later.",
    "Noted for next time.", "End of report.", "Thoughts?",
    "Just an observation.",
)

HASHTAGS = {
    "positive": ("#happy", "#recommended", "#win"),
    "negative": ("#fail", "#disappointed", "#never"),
    "neutral": ("#update", "#review", "#question"),
}

PUNCTUATION = {
    "positive": (".", ".", "!", "!", "!!", ""),
    "negative": (".", ".", "!", "!!", "...", ""),
    "neutral": (".", ".", ".", "", "..."),
}

# Label-free openers. Those ending in "." start a new sentence.
OPENERS = (
    "Honestly,", "So", "Okay,", "Quick update:", "Well,", "Just a heads up,",
    "For what it's worth,", "Update:", "Day three:", "Right,", "PSA:",
    "Not gonna lie,", "To be fair,", "Real talk:", "First post here.",
    "Long time reader.", "Small note:", "Anyway,",
)

TIMEFRAMES = (
    "last week", "yesterday", "a month ago", "over the weekend", "on Monday",
    "this morning", "back in March", "two weeks ago", "last night",
    "earlier today",
)

# "I <verb> <subject> <timeframe> and it ..." verbs that suit each kind.
STORY_VERBS = {
    "product": ("bought", "ordered", "got", "tried", "went with"),
    "app": ("downloaded", "installed", "tried", "started using"),
    "place": ("visited", "went to", "checked out", "tried"),
    "food": ("tried", "checked out", "finally tried"),
    "media": ("checked out", "finally got round to", "tried"),
    "service": ("used", "dealt with", "tried", "went with"),
}

CONNECTORS = (
    "Also,", "On top of that,", "Then", "After that,", "Meanwhile,",
    "To be clear,", "In the end,", "Plus", "Besides that,", "Oh, and",
)

MIN_WORDS = 3
LOWERCASE_PROBABILITY = 0.08  # social-media style, all lower case
HASHTAG_PROBABILITY = 0.05

# Template name -> relative weight (long texts are produced separately).
TEMPLATE_WEIGHTS = (
    ("fragment", 6),        # 3-5 words: "Really flimsy packaging."
    ("adjective", 7),       # "The air fryer is really great!"
    ("simple", 14),         # "[Opener] Subject predicate."
    ("followup", 16),       # "Subject predicate, and follow-up."
    ("two_sentences", 15),  # "Subject predicate. Follow-up. [Ending]"
    ("aspect", 10),         # "The aspect of subject is adjective."
    ("story", 12),          # "I tried subject timeframe and it predicate."
    ("question", 7),        # questions
    ("compare", 5),         # "Compared with X, subject predicate."
    ("multi_clause", 16),   # 3-4 clauses, roughly 30-60 words
)

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def cap(text: str) -> str:
    """Upper-case the first character only."""
    return text[:1].upper() + text[1:]


def join_words(*parts: str) -> str:
    """Join non-empty parts with single spaces."""
    return " ".join(p for p in parts if p)


def add_ending(rng: random.Random, v: "Vocabulary", text: str,
               probability: float) -> str:
    """Close a sentence with label punctuation, sometimes plus an ending."""
    if rng.random() < probability:
        return f"{text}{rng.choice(v.punctuation) or '.'} {rng.choice(v.endings)}"
    return f"{text}{rng.choice(v.punctuation)}"


def with_opener(rng: random.Random, sentence: str) -> str:
    """Prefix a label-free opener, fixing capitalisation of what follows."""
    opener = rng.choice(OPENERS)
    rest = cap(sentence) if opener.endswith(".") else sentence
    return f"{opener} {rest}"


class Vocabulary:
    """The fragments belonging to one label."""

    def __init__(self, label: str) -> None:
        self.label = label
        if label == "positive":
            self.predicates = POSITIVE_PREDICATES
            self.followups = POSITIVE_FOLLOWUPS
            self.adjectives = POSITIVE_ADJECTIVES
            self.aspect_adjectives = POSITIVE_ASPECT_ADJECTIVES
            self.modifiers = INTENSIFIERS
            self.endings = POSITIVE_ENDINGS
        elif label == "negative":
            self.predicates = NEGATIVE_PREDICATES
            self.followups = NEGATIVE_FOLLOWUPS
            self.adjectives = NEGATIVE_ADJECTIVES
            self.aspect_adjectives = NEGATIVE_ASPECT_ADJECTIVES
            self.modifiers = INTENSIFIERS
            self.endings = NEGATIVE_ENDINGS
        else:
            self.predicates = NEUTRAL_PREDICATES + NEUTRAL_MIXED_PREDICATES
            self.followups = NEUTRAL_FOLLOWUPS
            self.adjectives = NEUTRAL_ADJECTIVES
            self.aspect_adjectives = NEUTRAL_ADJECTIVES
            self.modifiers = NEUTRAL_QUALIFIERS
            self.endings = NEUTRAL_ENDINGS
        self.punctuation = PUNCTUATION[label]
        self.hashtags = HASHTAGS[label]

    @property
    def neutral(self) -> bool:
        return self.label == "neutral"

    def adjective(self, rng: random.Random) -> str:
        return join_words(rng.choice(self.modifiers), rng.choice(self.adjectives))

    def aspect_clause(self, rng: random.Random, kind: str, verb: str,
                      owner: str = "", aspect: str = "") -> str:
        """'the <aspect> [of <owner>] is <adjective>'; neutral: maybe balanced."""
        choices = [a for a in ASPECTS[kind] if a != aspect]
        other = rng.choice(choices)
        aspect = aspect or rng.choice([a for a in choices if a != other])
        if owner:
            aspect = f"{aspect} of {owner}"
        if self.neutral and rng.random() < 0.5:
            good = rng.choice(BALANCED_GOOD)
            bad = rng.choice(BALANCED_BAD)
            if rng.random() < 0.5:
                return (f"the {aspect} {verb} {good} but the {other} {verb} "
                        f"{bad}, so it evens out")
            return (f"the {aspect} {verb} {bad} while the {other} {verb} "
                    f"{good}, so overall it is a wash")
        adjective = join_words(rng.choice(self.modifiers),
                               rng.choice(self.aspect_adjectives))
        return f"the {aspect} {verb} {adjective}"


# --------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------


def t_fragment(rng: random.Random, v: Vocabulary) -> str:
    _, kind = rng.choice(SUBJECTS)
    if rng.random() < 0.5:
        adjective = join_words(rng.choice(v.modifiers),
                               rng.choice(v.aspect_adjectives))
        return cap(f"{adjective} {rng.choice(ASPECTS[kind])}"
                   f"{rng.choice(v.punctuation) or '.'}")
    return f"{cap(rng.choice(v.adjectives))}. {rng.choice(v.endings)}"


def t_adjective(rng: random.Random, v: Vocabulary) -> str:
    subject, _ = rng.choice(SUBJECTS)
    verb = rng.choice(("is", "was"))
    return add_ending(rng, v, f"{cap(subject)} {verb} {v.adjective(rng)}", 0.3)


def t_simple(rng: random.Random, v: Vocabulary) -> str:
    subject, _ = rng.choice(SUBJECTS)
    sentence = f"{subject} {rng.choice(v.predicates)}{rng.choice(v.punctuation)}"
    if rng.random() < 0.4:
        return with_opener(rng, sentence)
    return cap(sentence)


def t_followup(rng: random.Random, v: Vocabulary) -> str:
    subject, _ = rng.choice(SUBJECTS)
    links = (", and", ", and", ";") + (() if v.neutral else (" and honestly",))
    link = rng.choice(links)
    sentence = (f"{subject} {rng.choice(v.predicates)}{link} "
                f"{rng.choice(v.followups)}{rng.choice(v.punctuation)}")
    if rng.random() < 0.3:
        return with_opener(rng, sentence)
    return cap(sentence)


def t_two_sentences(rng: random.Random, v: Vocabulary) -> str:
    subject, _ = rng.choice(SUBJECTS)
    text = (f"{cap(subject)} {rng.choice(v.predicates)}. "
            f"{cap(rng.choice(v.followups))}{rng.choice(v.punctuation) or '.'}")
    if rng.random() < 0.5:
        text = f"{text} {rng.choice(v.endings)}"
    return text


def t_aspect(rng: random.Random, v: Vocabulary) -> str:
    subject, kind = rng.choice(SUBJECTS)
    clause = v.aspect_clause(rng, kind, rng.choice(("is", "was")), owner=subject)
    return add_ending(rng, v, cap(clause), 0.25)


def t_story(rng: random.Random, v: Vocabulary) -> str:
    subject, kind = rng.choice(SUBJECTS)
    verb = rng.choice(STORY_VERBS[kind])
    when = rng.choice(TIMEFRAMES)
    text = (f"I {verb} {subject} {when} and it "
            f"{rng.choice(v.predicates)}{rng.choice(v.punctuation)}")
    if rng.random() < 0.35:
        text = f"{text} {cap(rng.choice(v.followups))}."
    return text


def t_question(rng: random.Random, v: Vocabulary) -> str:
    subject, kind = rng.choice(SUBJECTS)
    if v.neutral:
        q = rng.choice(NEUTRAL_QUESTIONS).format(
            s=subject, a=rng.choice(ASPECTS[kind]))
        if rng.random() < 0.3:
            q = f"{cap(subject)} {rng.choice(NEUTRAL_PREDICATES)}. {q}"
        return q
    frame = rng.choice((
        "Has anyone else noticed that {s} {p}?",
        "Why is nobody talking about how {s} {p}?",
        "Am I the only one who thinks {s} {p}?",
        "Did you know {s} {p}?",
    ))
    q = frame.format(s=subject, p=rng.choice(v.predicates))
    if rng.random() < 0.4:
        q = f"{q} {rng.choice(v.endings)}"
    return q


def t_compare(rng: random.Random, v: Vocabulary) -> str:
    subject, kind = rng.choice(SUBJECTS)
    other = rng.choice([s for s, k in SUBJECTS if k == kind and s != subject])
    return (f"Compared with {other}, {subject} "
            f"{rng.choice(v.predicates)}{rng.choice(v.punctuation)}")


def t_multi_clause(rng: random.Random, v: Vocabulary) -> str:
    subject, kind = rng.choice(SUBJECTS)
    verb = rng.choice(("is", "was"))
    pred1, pred2 = rng.sample(v.predicates, 2)
    first = f"{subject} {pred1}."
    first = with_opener(rng, first) if rng.random() < 0.5 else cap(first)
    second = f"{cap(v.aspect_clause(rng, kind, verb))}."
    third = cap(rng.choice(v.followups))
    if rng.random() < 0.6:
        third += f", and it {pred2}"
    text = f"{first} {second} {third}{rng.choice(v.punctuation) or '.'}"
    if rng.random() < 0.5:
        text = f"{text} {rng.choice(v.endings)}"
    return text


TEMPLATES = {
    "fragment": t_fragment,
    "adjective": t_adjective,
    "simple": t_simple,
    "followup": t_followup,
    "two_sentences": t_two_sentences,
    "aspect": t_aspect,
    "story": t_story,
    "question": t_question,
    "compare": t_compare,
    "multi_clause": t_multi_clause,
}


def long_text(rng: random.Random, v: Vocabulary) -> str:
    """A 120-200 word multi-sentence rant or essay about one subject."""
    subject, kind = rng.choice(SUBJECTS)
    target = rng.randint(LONG_MIN_WORDS, LONG_MAX_WORDS)
    verb = rng.choice(("is", "was"))
    predicates = list(v.predicates)
    followups = list(v.followups)
    aspects = list(ASPECTS[kind])
    rng.shuffle(predicates)
    rng.shuffle(followups)
    rng.shuffle(aspects)
    first = f"{subject} {predicates.pop()}."
    sentences = [with_opener(rng, first) if rng.random() < 0.5 else cap(first)]
    words = len(sentences[0].split())
    while words < target:
        roll = rng.random()
        if roll < 0.35 and predicates:
            body = f"it {predicates.pop()}"
        elif roll < 0.65 and followups:
            body = followups.pop()
        elif roll < 0.9 and aspects:
            body = v.aspect_clause(rng, kind, verb, aspect=aspects.pop())
        elif predicates:
            looked = rng.choice(("went", "looked", "checked"))
            body = (f"I {looked} again {rng.choice(TIMEFRAMES)} "
                    f"and it {predicates.pop()}")
        else:
            break  # fragments used up; the length check below decides
        if rng.random() < 0.4:
            sentence = f"{rng.choice(CONNECTORS)} {body}."
        else:
            sentence = f"{cap(body)}."
        n = len(sentence.split())
        if words + n > LONG_MAX_WORDS:
            if words >= LONG_MIN_WORDS:
                break
            continue  # try a shorter sentence
        sentences.append(sentence)
        words += n
    ending = rng.choice(v.endings)
    if words + len(ending.split()) <= LONG_MAX_WORDS:
        sentences.append(ending)
    return " ".join(sentences)


def decorate(rng: random.Random, v: Vocabulary, text: str) -> str:
    """Optional hashtag and all-lower-case styling."""
    if rng.random() < HASHTAG_PROBABILITY:
        text = f"{text} {rng.choice(v.hashtags)}"
    if rng.random() < LOWERCASE_PROBABILITY:
        text = text.lower()
    return text


def check_text(text: str) -> None:
    """Reject empty texts and anything outside printable ASCII (e.g. newlines)."""
    if not text.strip():
        raise ValueError("empty text")
    if any(not (32 <= ord(c) < 127) for c in text):
        raise ValueError(f"non-printable or non-ASCII text: {text!r}")


def generate(rng: random.Random) -> list[tuple[str, str]]:
    """Return (text, label) pairs: ROWS_PER_LABEL unique texts per label."""
    names = [name for name, _ in TEMPLATE_WEIGHTS]
    weights = [w for _, w in TEMPLATE_WEIGHTS]
    seen: set[str] = set()  # membership only; order comes from the lists
    rows: list[tuple[str, str]] = []
    for label in LABELS:
        v = Vocabulary(label)
        texts: list[str] = []
        while len(texts) < LONG_PER_LABEL:
            text = decorate(rng, v, long_text(rng, v))
            n = len(text.split())
            if text not in seen and LONG_MIN_WORDS <= n <= LONG_MAX_WORDS:
                seen.add(text)
                texts.append(text)
        while len(texts) < ROWS_PER_LABEL:
            name = rng.choices(names, weights)[0]
            text = decorate(rng, v, TEMPLATES[name](rng, v))
            if text in seen or len(text.split()) < MIN_WORDS:
                continue
            seen.add(text)
            texts.append(text)
        for text in texts:
            check_text(text)
        rows.extend((text, label) for text in texts)
    rng.shuffle(rows)
    return rows


def write_csv(rows: list[tuple[str, str]], path: Path) -> None:
    with path.open("w", encoding="ascii", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("id", "text", "label"))
        for i, (text, label) in enumerate(rows):
            writer.writerow((i, text, label))


def summarise(rows: list[tuple[str, str]]) -> str:
    """One line: rows per label and min/median/max word counts."""
    counts = {label: sum(1 for _, l in rows if l == label) for label in LABELS}
    lengths = sorted(len(text.split()) for text, _ in rows)
    long_count = sum(1 for n in lengths if n >= LONG_MIN_WORDS)
    return (f"rows={len(rows)} "
            + " ".join(f"{k}={c}" for k, c in counts.items())
            + f" words min={lengths[0]} median={statistics.median(lengths)}"
            f" max={lengths[-1]} long(>={LONG_MIN_WORDS})={long_count}")


def main() -> None:
    rows = generate(random.Random(SEED))
    write_csv(rows, OUTPUT)
    print(f"wrote {OUTPUT}")
    print(summarise(rows))


if __name__ == "__main__":
    main()
